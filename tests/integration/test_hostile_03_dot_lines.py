"""Hostile input, class 3 of spec/hostile.md: dot lines and buffer edges.

Each case where bytes matter is sent three ways (hostilelib.py); the last test
checks the server still serves and holds nothing more than before the class."""


import pytest

from hostilelib import WAYS, assert_left_clean, hostile_server, seed_for, transaction


@pytest.fixture(scope="module")
def srv(mailgate_module):
    """Defaults (bare_crlf = reject, 10M, 1000 header lines, 50 recipients), no message cap."""
    return hostile_server(mailgate_module, policy={"max_messages_per_connection": 0})


def edge_sizes():
    ns = set()
    for k in range(1, 17):
        p = 2 ** k
        ns.update({p - 2, p - 1, p, p + 1})
    ns.update({0, 1, 997, 998, 999, 1000, 1001})
    return sorted(n for n in ns if n >= 0)


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("n", edge_sizes())
def test_class3_line_of_n_then_dot(srv, n, way):
    body = b"a" * n + b"\r\n"
    c = transaction(srv)
    c.send(body + b".\r\n", way, seed_for("edge", n, way))
    r = c.reply(timeout=60)
    assert r.code == 250, r
    c.quit()
    assert srv.spool_file(r.mid).body == body


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("n", [510, 511, 1022, 1023, 4093, 4094, 4095, 4096, 8190, 8191, 65533])
def test_class3_header_then_line_of_n_then_dot(srv, n, way):
    """The same, shifted by a header, so the terminator crosses other offsets."""
    body = b"Subject: edge\r\n\r\n" + b"b" * n + b"\r\n"
    c = transaction(srv)
    c.send(body + b".\r\n", way, seed_for("hedge", n, way))
    r = c.reply(timeout=60)
    assert r.code == 250, r
    c.quit()
    assert srv.spool_file(r.mid).body == body


DOT_CASES = {
    "dotdot-x": (b"..x\r\n", b".x\r\n"),
    "three-dots": (b"...\r\n", b"..\r\n"),
    "dotdot": (b"..\r\n", b".\r\n"),
    # (not first: a first line starting with a space would fold into the server's Received:)
    "dot-space": (b"x\r\n. \r\n", b"x\r\n \r\n"),
    "first-line": (b"..first\r\nsecond\r\n", b".first\r\nsecond\r\n"),
    "many": (b"a\r\n..b\r\n..\r\n...c\r\nd.\r\n.e\r\n", b"a\r\n.b\r\n.\r\n..c\r\nd.\r\ne\r\n"),
    "stuffed-terminator-lookalike": (b"x\r\n..\r\nMAIL FROM:<evil@dots.example>\r\n",
                                     b"x\r\n.\r\nMAIL FROM:<evil@dots.example>\r\n"),
    "long-stuffed-4096": (b"." + b"." * 4095 + b"\r\n", b"." * 4095 + b"\r\n"),
    "long-stuffed-8191": (b".." + b"c" * 8190 + b"\r\n", b"." + b"c" * 8190 + b"\r\n"),
}


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("case", list(DOT_CASES))
def test_class3_dot_stuffing(srv, case, way):
    wire, stored = DOT_CASES[case]
    c = transaction(srv)
    c.send(wire + b".\r\n", way, seed_for("dot", case, way))
    r = c.reply()
    assert r.code == 250, r
    c.cmd("NOOP", 250, "ok")
    c.quit()
    assert srv.spool_file(r.mid).body == stored


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("case,body", [
    ("empty", b""),
    ("blank-line", b"\r\n"),
    ("header-only", b"Subject: only a header\r\n"),
    ("headers-only", b"From: a@test.example\r\nTo: b@test.example\r\nSubject: h\r\n"),
    ("headers-and-blank", b"Subject: h\r\n\r\n"),
])
def test_class3_empty_and_header_only(srv, case, body, way):
    mark = srv.log_mark()
    c = transaction(srv)
    c.send(body + b".\r\n", way, seed_for("small", case, way))
    r = c.reply()
    assert r.code == 250, r
    c.quit()
    assert srv.spool_file(r.mid).body == body
    srv.assert_log(r"Info: MID %d ready %d bytes from <sender@test\.example>$" % (r.mid, len(body)),
                   mark)


def test_class3_zz_left_clean(srv):
    """The server still serves, and holds no more descriptors or heap than before."""
    assert_left_clean(srv)
