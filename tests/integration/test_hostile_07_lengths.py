"""Hostile input, class 7 of spec/hostile.md: lengths.

Each case where bytes matter is sent three ways (hostilelib.py); the last test
checks the server still serves and holds nothing more than before the class."""


import pytest

from hostilelib import WAYS, assert_left_clean, hostile_server, seed_for, transaction


@pytest.fixture(scope="module")
def srv(mailgate_module):
    """Defaults (bare_crlf = reject, 10M, 1000 header lines, 50 recipients), no message cap."""
    return hostile_server(mailgate_module, policy={"max_messages_per_connection": 0})


def make_domain(total):
    """A syntactically valid domain of exactly `total` octets."""
    labels, left = [], total - len("example") - 1
    while left > 0:
        n = min(63, left - 1) if left > 1 else 1
        if left - n == 1:               # never leave just a dot's worth
            n -= 1
        labels.append("d" * n)
        left -= n + 1
    d = ".".join(labels + ["example"])
    assert len(d) == total, (len(d), total)
    assert all(1 <= len(l) <= 63 for l in d.split("."))
    return d


@pytest.mark.parametrize("way", WAYS)
def test_class7_megabyte_line_then_crlf(srv, way):
    c = srv.connect()
    c.ehlo()
    mark = srv.log_mark()
    c.send_background(b"MAIL FROM:<" + b"a" * (1 << 20) + b"\r\nNOOP\r\n", way,
                      seed_for("mib-crlf", way))
    c.expect(500, "Line too long", timeout=60)
    c.expect(250, "ok", timeout=60)
    assert c.join_background() is None
    srv.assert_failed_logged(c, mark, count=1)
    c.cmd("MAIL FROM:<a@test.example>", 250)
    c.quit()


@pytest.mark.parametrize("way", WAYS)
def test_class7_megabyte_line_no_newline(srv, way):
    c = srv.connect()
    c.ehlo()
    c.send_background(b"X" * (1 << 20), way, seed_for("mib", way))
    c.expect(500, "Line too long", timeout=60)
    # another client is served meanwhile
    srv.assert_serving()
    c.close()
    c.join_background()


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("case", ["local-64", "local-65", "domain-256", "local-400"])
def test_class7_path_lengths(srv, case, way):
    if case == "local-64":
        addr, ok = "l" * 64 + "@test.example", True
    elif case == "local-65":
        addr, ok = "l" * 65 + "@test.example", False
    elif case == "local-400":
        addr, ok = "l" * 400 + "@test.example", False
    else:
        addr, ok = "a@" + make_domain(256), False
    for cmd in ("MAIL FROM", "RCPT TO"):
        c = srv.connect()
        c.ehlo()
        if cmd == "RCPT TO":
            c.mail("a@test.example")
        mark = srv.log_mark()
        c.line("%s:<%s>" % (cmd, addr), way, seed_for("len", case, cmd, way))
        r = c.reply()
        if ok:
            assert r.code == 250, r
        else:
            assert r.code == 501 and r.text.startswith("#5.5.2 syntax error"), r
            srv.assert_failed_logged(c, mark, count=1)
            # the echoed token is cut to 64 characters
            assert len(r.text) <= len("#5.5.2 syntax error ") + 64, r
        c.quit()


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("size", ["9" * 100, "18446744073709551616", "18446744073709551617",
                                  "36893488147419103232", "10485761"])
def test_class7_huge_size(srv, size, way):
    c = srv.connect()
    c.ehlo()
    mark = srv.log_mark()
    c.line("MAIL FROM:<a@test.example> SIZE=%s" % size, way, seed_for("size", size, way))
    c.expect(552, "size limit exceeded")
    srv.assert_failed_logged(c, mark, count=1)
    c.cmd("MAIL FROM:<a@test.example> SIZE=10485760", 250)
    c.quit()


@pytest.mark.parametrize("way", WAYS)
def test_class7_ten_thousand_pipelined_rcpts(srv, way):
    n = 10000
    c = srv.connect()
    c.ehlo()
    c.mail("a@test.example")
    mark = srv.log_mark()
    c.send_background(b"".join(b"RCPT TO:<r%d@test.example>\r\n" % i for i in range(n)), way,
                      seed_for("rcpts", way))
    for i in range(n):
        r = c.reply(timeout=60)
        if i < 50:
            assert r.raw == b"250 recipient <r%d@test.example> ok\r\n" % i, (i, r)
        else:
            assert r.raw == b"452 #4.5.3 Too many recipients\r\n", (i, r)
    assert c.join_background() is None
    r = c.data(b"Subject: fifty\r\n\r\nx\r\n.\r\n")
    assert r.code == 250, r
    c.quit()
    assert len(srv.spool_file(r.mid).rcpts) == 50
    srv.assert_failed_logged(c, mark, count=n - 50)


@pytest.mark.parametrize("way", WAYS)
def test_class7_hundred_thousand_header_lines(srv, way):
    before = srv.queue_names()
    c = transaction(srv)
    mark = srv.log_mark()
    data = b"".join(b"X-H: %d\r\n" % i for i in range(100000)) + b"\r\nbody\r\n.\r\n"
    c.send_background(data, way, seed_for("hdrs", way))
    c.expect(552, "#5.3.4 message header size exceeds limit", timeout=120)
    assert c.join_background() is None
    srv.assert_failed_logged(c, mark, count=1)
    c.cmd("NOOP", 250, "ok")
    c.quit()
    assert srv.queue_names() == before


@pytest.mark.parametrize("way", WAYS)
def test_class7_two_mib_header_line(srv, way):
    body = b"X-Long: " + b"L" * (2 << 20) + b"\r\nSubject: long\r\n\r\nbody\r\n"
    c = transaction(srv)
    c.send_background(body + b".\r\n", way, seed_for("long", way))
    r = c.reply(timeout=120)
    assert c.join_background() is None
    assert r.code == 250, r
    c.quit()
    assert srv.spool_file(r.mid).body == body


def test_class7_zz_left_clean(srv):
    """The server still serves, and holds no more descriptors or heap than before."""
    assert_left_clean(srv)
