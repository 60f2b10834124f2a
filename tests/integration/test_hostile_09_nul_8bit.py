"""Hostile input, class 9 of spec/hostile.md: NUL and 8-bit bytes.

Each case where bytes matter is sent three ways (hostilelib.py); the last test
checks the server still serves and holds nothing more than before the class."""


import pytest

from hostilelib import WAYS, assert_left_clean, assert_log_well_formed, hostile_server, seed_for, transaction


@pytest.fixture(scope="module")
def srv(mailgate_module):
    """Defaults (bare_crlf = reject, 10M, 1000 header lines, 50 recipients), no message cap."""
    return hostile_server(mailgate_module, policy={"max_messages_per_connection": 0})


CMD_CASES = {
    "nul-in-address": (b"MAIL FROM:<a\x00b@test.example>", False),
    "nul-in-verb": (b"MA\x00IL FROM:<a@test.example>", False),
    "nul-alone": (b"\x00", False),
    "noop-nul": (b"NOOP\x00", False),
    "utf8-local": (b"MAIL FROM:<\xc3\xa9@test.example>", False),
    "utf8-domain": (b"MAIL FROM:<a@\xc3\xa9.example>", False),
    "latin1-helo": (b"HELO \xff\xfe", False),
    "nul-ehlo": (b"EHLO a\x00b", False),
    "high-bytes": (b"\xff\xfe\xfd", False),
    "nul-rcpt": (b"RCPT TO:<b@test.example\x00>", True),
    "nul-rcpt-after": (b"RCPT TO:<b@test.example>\x00", True),
    "utf8-rcpt": (b"RCPT TO:<\xe2\x82\xac@test.example>", True),
    "data-nul": (b"DATA\x00", True),
}


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("case", list(CMD_CASES))
def test_class9_nul_and_8bit_in_commands(srv, case, way):
    line, in_txn = CMD_CASES[case]
    c = srv.connect()
    c.ehlo()
    if in_txn:
        c.mail("a@test.example")
        c.rcpt("ok@test.example")
    mark = srv.log_mark()
    c.line(line, way, seed_for("nul", case, way))
    r = c.reply()                      # reply() also checks every byte is printable
    assert r.code in (500, 501), r
    srv.assert_failed_logged(c, mark, count=1)
    c.cmd("NOOP", 250, "ok")
    if in_txn:                         # the transaction holds only the good recipient
        r = c.data(b"Subject: n\r\n\r\nx\r\n.\r\n")
        assert r.code == 250, r
        assert srv.spool_file(r.mid).rcpts == [(0, "<ok@test.example>")]
    c.quit()
    assert_log_well_formed(srv)


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("case,body", [
    ("nul-header", b"Subject: a\x00b\r\nX-N: \x00\x00\r\n\r\nx\r\n"),
    ("8bit-header", b"Subject: caf\xc3\xa9 \xff\xfe\r\n\r\nx\r\n"),
    ("nul-body", b"Subject: n\r\n\r\n\x00\r\na\x00b\r\n\x00.\r\n"),
    ("8bit-body", b"Subject: n\r\n\r\n" + bytes(range(0x80, 0x100)) + b"\r\n"),
])
def test_class9_nul_and_8bit_in_message(srv, case, body, way):
    mark = srv.log_mark()
    c = transaction(srv)
    c.send(body + b".\r\n", way, seed_for("msg9", case, way))
    r = c.reply()
    assert r.code == 250, r
    c.quit()
    assert srv.spool_file(r.mid).body == body
    assert_log_well_formed(srv)
    assert "\x00" not in srv.log_since(mark)


def test_class9_zz_left_clean(srv):
    """The server still serves, and holds no more descriptors or heap than before."""
    assert_left_clean(srv)
