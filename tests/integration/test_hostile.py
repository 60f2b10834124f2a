"""Hostile input, by class (smuggling, reject-then-read, buffer edges, early talkers,
code-like strings, lengths, ESMTP parameters, NUL and 8-bit bytes).

Where bytes matter each case is sent three ways: one write, one byte per write,
and random splits from random.Random(seed); the seed is printed (and shown by
pytest when the test fails). Set MAILGATE_TEST_SEED to replay another base seed.
"""

import os
import re
import zlib

import pytest

from conftest import HOSTNAME, unstuff

WAYS = ["one", "bytes", "random"]
BASE_SEED = int(os.environ.get("MAILGATE_TEST_SEED", "20261128"))
ACCEPTED = re.compile(r"ok: Message \d+ accepted")


def seed_for(*parts):
    s = BASE_SEED + zlib.crc32(repr(parts).encode())
    print("random split seed: %d (MAILGATE_TEST_SEED=%d, case %r)" % (s, BASE_SEED, parts))
    return s


@pytest.fixture(scope="module")
def srv(mailgate_module):
    """Defaults (bare_crlf = reject, 10M, 1000 header lines, 50 recipients), no message cap."""
    return mailgate_module(policy={"max_messages_per_connection": 0})


@pytest.fixture(scope="module")
def srv_accept(mailgate_module):
    return mailgate_module(policy={"max_messages_per_connection": 0, "bare_crlf": "accept"})


@pytest.fixture(scope="module")
def srv_small(mailgate_module):
    return mailgate_module(policy={"max_messages_per_connection": 0, "max_message_size": "4K"},
                           limits={"max_header_lines": 10})


def has_bare(data):
    return bool(re.search(rb"\r(?!\n)|(?<!\r)\n", data))


def transaction(s, sender="sender@test.example", rcpt="rcpt@test.example"):
    """A new connection, EHLO, MAIL, RCPT, DATA answered with 354."""
    c = s.connect()
    c.ehlo()
    c.mail(sender)
    c.rcpt(rcpt)
    c.cmd("DATA", 354, "go ahead")
    return c


def assert_log_well_formed(s):
    """Every line of the log is '<ctime> <Level>: <text>': nothing split or forged
    a line, and no raw control byte got in."""
    raw = s.log_path.read_bytes()
    for b in set(raw):
        assert b == 0x0a or b >= 0x20 and b != 0x7f, "raw control byte %#x in the log" % b
    s.log_texts()


# ============================================================ class 1: SMTP smuggling

FAKE_ENDS = {
    "lf.lf": b"\n.\n",
    "lf.crlf": b"\n.\r\n",
    "cr.cr": b"\r.\r",
    "cr.lf": b"\r.\n",
    "crlf.lf": b"\r\n.\n",
    "crlf.cr": b"\r\n.\r",
    "crlf-nul.crlf": b"\r\n\x00.\r\n",
    "crlf.cr-crlf": b"\r\n.\r\r\n",
    "lf.cr": b"\n.\r",
    "crlf.nul-crlf": b"\r\n.\x00\r\n",
    "crlf-sp.crlf": b"\r\n .\r\n",
    "crlf..crlf": b"\r\n..\r\n",
    "crlf.lf-crlf": b"\r\n.\n\r\n",
    "cr-crlf.cr": b"\r\r\n.\r",
}
SMUGGLED = (b"MAIL FROM:<evil@smuggle.example>\r\nRCPT TO:<victim@smuggle.example>\r\nDATA\r\n"
            b"Subject: smuggled\r\n\r\nsmuggled body\r\n")


def unstuff_variants(data):
    """What a server may store for data holding bare CR/LF: dot-unstuffing on
    CRLF lines (the strict reading), or also after a bare LF / bare CR."""
    return {unstuff(data),
            re.sub(rb"(^|\n)\.", rb"\1", data),
            re.sub(rb"(^|[\r\n])\.", rb"\1", data)}


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("fake", list(FAKE_ENDS), ids=list(FAKE_ENDS))
@pytest.mark.parametrize("mode", ["reject", "accept"])
def test_class1_smuggling(srv, srv_accept, mode, fake, way):
    s = srv if mode == "reject" else srv_accept
    payload = b"Subject: smuggle\r\n\r\nfirst part" + FAKE_ENDS[fake] + SMUGGLED
    assert b"\r\n.\r\n" not in payload and payload.endswith(b"\r\n")
    before = set(s.queue_mids())
    mark = s.log_mark()
    c = transaction(s)
    c.send(payload + b".\r\n", way, seed_for(mode, fake, way))
    r = c.reply()
    # exactly one reply for the message: the next one answers our NOOP
    c.cmd("NOOP", 250, "ok")
    c.quit()
    s.wait_closed_logged(c, mark)
    new = sorted(set(s.queue_mids()) - before)
    log = s.log_since(mark)
    assert "evil@smuggle.example" not in log and "victim@smuggle.example" not in log, log
    if mode == "reject" and has_bare(payload):
        assert r.raw == b"554 message body contains illegal bare CR/LF characters.\r\n", r
        assert new == [], "a refused message left %s in the queue" % new
        s.assert_failed_logged(c, mark, count=1)
    else:
        assert r.code == 250 and ACCEPTED.fullmatch(r.text), r
        assert new == [r.mid], "expected exactly one new message, got %s" % new
        sf = s.spool_file(r.mid)
        sf.check_envelope_clean()
        assert sf.field("sender") == "<sender@test.example>"
        assert sf.rcpts == [(0, "<rcpt@test.example>")]
        assert b"MAIL FROM:<evil@smuggle.example>" in sf.body
        assert sf.body in unstuff_variants(payload), \
            "stored %r, sent %r" % (sf.body, payload)
        if not has_bare(payload):
            assert sf.body == unstuff(payload)
    assert s.tmp_settled() == []


def test_class1_server_still_serves(srv, srv_accept):
    srv.assert_serving()
    srv_accept.assert_serving()
    assert_log_well_formed(srv)
    assert_log_well_formed(srv_accept)


# ============================================================ class 2: reject, then keep reading

HIDDEN = (b"MAIL FROM:<evil@hidden.example>\r\nRCPT TO:<victim@hidden.example>\r\nDATA\r\n"
          b"QUIT\r\nRSET\r\n")


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("limit", ["size", "headers"])
def test_class2_rest_is_dropped(srv_small, limit, way):
    s = srv_small
    if limit == "size":
        data = b"Subject: big\r\n\r\n" + b"y" * 70 + b"\r\n"
        data += (b"z" * 70 + b"\r\n") * 60 + HIDDEN + (b"w" * 70 + b"\r\n") * 10 + HIDDEN
        expect = b"552 #5.3.4 message size exceeds limit\r\n"
    else:
        data = b"".join(b"X-H-%d: v\r\n" % i for i in range(30)) + HIDDEN
        data += b"\r\nbody\r\n" + HIDDEN
        expect = b"552 #5.3.4 message header size exceeds limit\r\n"
    before = s.queue_names()
    mark = s.log_mark()
    c = transaction(s)
    c.send(data + b".\r\n", way, seed_for(limit, way))
    r = c.reply()
    assert r.raw == expect, r
    c.cmd("NOOP", 250, "ok")
    c.cmd("MAIL FROM:<after@test.example>", 250)     # no nested transaction from the data
    c.quit()
    s.wait_closed_logged(c, mark)
    s.assert_failed_logged(c, mark, count=1)
    assert "hidden.example" not in s.log_since(mark)
    assert s.queue_names() == before and s.tmp_settled() == []


def test_class2_server_still_serves(srv_small):
    srv_small.assert_serving()


# ============================================================ class 3: dot lines and buffer edges

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


def test_class3_server_still_serves(srv):
    srv.assert_serving()


# ============================================================ class 5: early talkers, pipelining abuse

@pytest.fixture(scope="module")
def srv_delay(mailgate_module):
    return mailgate_module(policy={"greet_delay": "1s", "max_messages_per_connection": 0})


@pytest.mark.parametrize("early", [b"EHLO early.example\r\n", b"E", b"\r\n",
                                   b"EHLO a\r\nMAIL FROM:<a@test.example>\r\n",
                                   b"GET / HTTP/1.0\r\n\r\n"],
                         ids=["ehlo", "one-byte", "crlf", "pipelined", "http"])
def test_class5_early_talker(srv_delay, early):
    s = srv_delay
    before = s.queue_names()
    mark = s.log_mark()
    c = s.raw_connect()
    c.send(early)
    r = c.reply()
    assert r.raw == b"554 SMTP synchronization error\r\n", r
    c.expect_closed()
    s.assert_failed_logged(None, mark, count=1)
    assert s.queue_names() == before


@pytest.mark.parametrize("after", [b"X", b"\r\n", b"Subject: x\r\n\r\nbody\r\n.\r\n",
                                   b".\r\nMAIL FROM:<evil@early.example>\r\n"],
                         ids=["one-byte", "crlf", "message", "dot-and-mail"])
def test_class5_text_before_354(srv, after):
    s = srv
    before = s.queue_names()
    c = s.connect()
    c.ehlo()
    mark = s.log_mark()
    c.send(b"MAIL FROM:<a@test.example>\r\nRCPT TO:<b@test.example>\r\nDATA\r\n" + after)
    c.expect(250)
    c.expect(250)
    c.expect(554, "SMTP synchronization error")
    c.expect_closed()
    s.assert_failed_logged(c, mark, count=1)
    assert s.queue_names() == before
    assert "evil@early.example" not in s.log_since(mark)


def test_class5_server_still_serves(srv_delay):
    srv_delay.assert_serving()


# ============================================================ class 6: strings that look like code

VALID_LOCAL = {
    "backticks": "`touch${IFS}/tmp/mailgate-pwned`",
    "exim-run": "${run{/bin/id}}",
    "format": "%s%n%x%p%08x",
    "pipe": "a|b",
    "single-quotes": "'q'",
    "amp-tilde-bang": "a&b~c!d",
    "dollar-ifs": "$IFS",
    "hash": "#hash",
    "quoted-space": '"a b"',
    "quoted-metachar": '";sleep 5;$(id)"',
    "quoted-backslash": '"a\\"b\\\\c"',
}
INVALID_LOCAL = {
    "opensmtpd": ";sleep 66;",
    "exim-run-space": "${run{/bin/sh -c id}}",
    "backticks-space": "`touch /tmp/mailgate-pwned`",
    "subshell": "$(id)",
    "semicolon": "a;b",
    "space": "a b",
    "backslash": "a\\b",
    "quote-in-middle": 'a"b',
    "angle": "a<b",
    "comma": "a,b",
    "unbalanced-quote": '"abc',
}


def run_valid_address(s, local, way, seed):
    addr = local + "@code.example"
    mark = s.log_mark()
    c = s.connect()
    c.ehlo()
    c.line("MAIL FROM:<%s>" % addr, way, seed)
    c.expect(250, "sender <%s> ok" % addr)
    c.line("RCPT TO:<%s>" % addr, way, seed)
    c.expect(250, "recipient <%s> ok" % addr)
    r = c.data(b"Subject: code\r\n\r\nx\r\n.\r\n")
    assert r.code == 250, r
    c.quit()
    sf = s.spool_file(r.mid)
    sf.check_envelope_clean()
    assert sf.field("sender") == "<%s>" % addr
    assert sf.rcpts == [(0, "<%s>" % addr)]
    assert_log_well_formed(s)
    texts = s.log_texts(mark)
    # literal; a server may escape the backslash itself (as \\ or \x5c) to keep
    # its \xNN escapes unambiguous
    forms = {addr, addr.replace("\\", "\\\\"), addr.replace("\\", "\\x5c"),
             addr.replace("\\", "\\x5C")}
    assert any("MID %d ICID %d From: <%s>" % (r.mid, c.icid, a) in texts for a in forms), texts
    assert any("MID %d ICID %d RID 0 To: <%s>" % (r.mid, c.icid, a) in texts for a in forms), texts
    assert not os.path.exists("/tmp/mailgate-pwned")


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("case", list(VALID_LOCAL))
def test_class6_valid_code_like_address_is_literal(srv, case, way):
    run_valid_address(srv, VALID_LOCAL[case], way, seed_for("valid", case, way))


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("cmd", ["MAIL FROM", "RCPT TO"])
@pytest.mark.parametrize("case", list(INVALID_LOCAL) + ["domain-subshell", "domain-semicolon"])
def test_class6_invalid_code_like_address_is_syntax_error(srv, case, cmd, way):
    if case == "domain-subshell":
        addr = "a@$(id).example"
    elif case == "domain-semicolon":
        addr = "a@code.example;id"
    else:
        addr = INVALID_LOCAL[case] + "@code.example"
    c = srv.connect()
    c.ehlo()
    if cmd == "RCPT TO":
        c.mail("a@test.example")
    mark = srv.log_mark()
    c.line("%s:<%s>" % (cmd, addr), way, seed_for("invalid", case, cmd, way))
    r = c.reply()
    assert r.code == 501 and r.text.startswith("#5.5.2 syntax error"), r
    srv.assert_failed_logged(c, mark, count=1)
    c.cmd("NOOP", 250, "ok")
    c.quit()
    assert_log_well_formed(srv)


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("helo", ["$(id)", ";id;", "%s%n%x", "${run{id}}", "'a'\"b\"\\c",
                                  "`id`", "a|b&c"])
def test_class6_code_like_helo(srv, helo, way):
    c = srv.connect()
    c.line("HELO " + helo, way, seed_for("helo", helo, way))
    r = c.reply()
    assert r.code in (250, 501), r
    if r.code == 501:
        c.quit()
        return
    assert r.text == HOSTNAME
    mid = c.send_message()
    c.quit()
    sf = srv.spool_file(mid)
    sf.check_envelope_clean()
    assert sf.field("helo") == helo
    assert not re.search(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", sf.received), sf.received
    assert_log_well_formed(srv)


def test_class6_header_controls_escaped_in_log(srv):
    subject = b"a\x1b[2Jb\x07c%s%n${run{id}}\x7fz"
    msgid = b"<\x1b]0;pwn\x07@x.example>"
    mark = srv.log_mark()
    c = transaction(srv)
    c.send(b"Subject: " + subject + b"\r\nMessage-ID: " + msgid + b"\r\n\r\nx\r\n.\r\n")
    r = c.reply()
    assert r.code == 250, r
    c.quit()
    assert_log_well_formed(srv)
    texts = srv.log_texts(mark)
    subj = [t for t in texts if t.startswith("MID %d Subject " % r.mid)]
    assert len(subj) == 1, texts
    assert re.fullmatch(r"MID %d Subject 'a\\x1[bB]\[2Jb\\x07c%%s%%n\$\{run\{id\}\}\\x7[fF]z'" % r.mid,
                        subj[0]), subj
    mids = [t for t in texts if t.startswith("MID %d Message-ID " % r.mid)]
    assert len(mids) == 1 and re.fullmatch(
        r"MID %d Message-ID '<\\x1[bB]\]0;pwn\\x07@x\.example>'" % r.mid, mids[0]), mids


@pytest.mark.parametrize("sep", [b"\r", b"\n"], ids=["cr", "lf"])
def test_class6_forged_log_line_in_subject(srv_accept, sep):
    """With bare_crlf = accept a Subject can carry CR/LF: the log must escape them."""
    s = srv_accept
    mark = s.log_mark()
    forged = b"Sat Nov 28 19:56:22 2026 Info: ICID 999999 close"
    c = transaction(s)
    c.send(b"Subject: x" + sep + forged + b"\r\n\r\nbody\r\n.\r\n")
    r = c.reply()
    assert r.code == 250, r
    c.quit()
    s.wait_closed_logged(c, mark)
    assert_log_well_formed(s)
    assert "ICID 999999 close" not in s.log_texts(mark)
    assert s.spool_file(r.mid).body == b"Subject: x" + sep + forged + b"\r\n\r\nbody\r\n"


def test_class6_server_still_serves(srv, srv_accept):
    srv.assert_serving()
    srv_accept.assert_serving()


# ============================================================ class 7: lengths

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


def test_class7_server_still_serves(srv):
    srv.assert_serving()


# ============================================================ class 8: ESMTP parameters

A = "MAIL FROM:<a@test.example>"
PARAM_CASES = {
    # id: (line, code, exact text | regex | None (any text))
    "size-empty": (A + " SIZE=", 501, re.compile(r"Unknown value ?")),
    "size-negative": (A + " SIZE=-1", 501, "Unknown value -1"),
    "size-plus": (A + " SIZE=+5", 501, "Unknown value +5"),
    "size-float": (A + " SIZE=1e3", 501, "Unknown value 1e3"),
    "size-hex": (A + " SIZE=0x10", 501, "Unknown value 0x10"),
    # "=" may not appear in an esmtp-value (RFC 5321 4.1.2): a syntax error is fair too
    "size-eq-eq": (A + " SIZE=1=2", 501,
                   re.compile(r"Unknown value 1=2|#5\.5\.2 syntax error \S+")),
    "body-empty": (A + " BODY=", 501, re.compile(r"Unknown value ?")),
    "body-9bit": (A + " BODY=9BIT", 501, "Unknown value 9BIT"),
    "body-long": (A + " BODY=" + "V" * 100, 501, "Unknown value " + "V" * 64),
    "unknown-bare": (A + " FOO", 504, "Command parameter FOO unrecognized"),
    "unknown-empty": (A + " FOO=", 504, "Command parameter FOO unrecognized"),
    "unknown-long": (A + " " + "K" * 100 + "=1", 504,
                     "Command parameter " + "K" * 64 + " unrecognized"),
    "envid-crlf-xtext": (A + " ENVID=x+0D+0A+00y", 504, "Command parameter ENVID unrecognized"),
    "ret": (A + " RET=FULL", 504, "Command parameter RET unrecognized"),
    "smtputf8": (A + " SMTPUTF8", 504, "Command parameter SMTPUTF8 unrecognized"),
    "size-repeated": (A + " SIZE=10 SIZE=20", None, None),
    "body-repeated": (A + " BODY=7BIT BODY=8BITMIME", None, None),
    "no-keyword": (A + " =5", None, None),
    "no-space": (A + "SIZE=5", 501, re.compile(r"#5\.5\.2 syntax error.*")),
    "rcpt-notify": ("RCPT TO:<b@test.example> NOTIFY=NEVER", 504,
                    "Command parameter NOTIFY unrecognized"),
    "rcpt-orcpt": ("RCPT TO:<b@test.example> ORCPT=rfc822;b+40test.example", 504,
                   "Command parameter ORCPT unrecognized"),
    "rcpt-size": ("RCPT TO:<b@test.example> SIZE=10", 504, "Command parameter SIZE unrecognized"),
}
GOOD_PARAMS = {
    "body-7bit": A + " BODY=7BIT",
    "body-8bitmime-lower": A + " body=8bitmime",
    "size-and-body": A + " SIZE=100 BODY=8BITMIME",
    "size-lower": A + " size=100",
    "size-zero": A + " SIZE=0",
}


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("case", list(PARAM_CASES))
def test_class8_bad_parameters(srv, case, way):
    line, code, text = PARAM_CASES[case]
    c = srv.connect()
    c.ehlo()
    if line.startswith("RCPT"):
        c.mail("a@test.example")
    mark = srv.log_mark()
    c.line(line, way, seed_for("param", case, way))
    r = c.reply()
    if code is None:
        assert r.code in (501, 504), r
    else:
        assert r.code == code, r
        if isinstance(text, re.Pattern):
            assert text.fullmatch(r.text), r
        elif text is not None:
            assert r.text == text, r
    srv.assert_failed_logged(c, mark, count=1)
    if line.startswith("MAIL"):
        c.cmd("RCPT TO:<b@test.example>", 503, "#5.5.1 MAIL first")    # nothing started
    else:
        c.cmd("DATA", 503, "#5.5.1 RCPT first")
    c.quit()
    assert "\r" not in srv.log_since(mark) and "\x00" not in srv.log_since(mark)


@pytest.mark.parametrize("kw", [b"F\x01O", b"F\xffO", b"F\x7fO"], ids=["ctl", "8bit", "del"])
def test_class8_parameter_echo_is_sanitized(srv, kw):
    c = srv.connect()
    c.ehlo()
    c.line(A.encode() + b" " + kw + b"=1")
    r = c.reply()
    assert r.code in (500, 501, 504), r
    if r.code == 504:
        assert r.text == "Command parameter F?O unrecognized", r
    c.quit()


@pytest.mark.parametrize("case", list(GOOD_PARAMS))
def test_class8_good_parameters(srv, case):
    c = srv.connect()
    c.ehlo()
    c.cmd(GOOD_PARAMS[case], 250, "sender <a@test.example> ok")
    c.rcpt("b@test.example")
    r = c.data(b"Subject: p\r\n\r\nx\r\n.\r\n")
    assert r.code == 250
    c.quit()
    sf = srv.spool_file(r.mid)
    sf.check_envelope_clean()
    if "8bitmime" in case or case == "size-and-body":
        assert sf.field("body") == "8BITMIME"


def test_class8_server_still_serves(srv):
    srv.assert_serving()


# ============================================================ class 9: NUL and 8-bit bytes

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


def test_class9_server_still_serves(srv):
    srv.assert_serving()
