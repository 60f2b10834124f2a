"""Every 4xx/5xx reply under its condition, each with its 'Receiving Failed' log line."""

import re
import select
import time

import pytest

from conftest import HOSTNAME, poll_until

ACCEPTED = re.compile(r"ok: Message \d+ accepted")


@pytest.fixture(scope="module")
def srv(mailgate_module):
    return mailgate_module(
        listener={"ipmm": False},
        policy={"max_message_size": "64K", "max_recipients_per_message": 5,
                "max_messages_per_connection": 3},
        limits={"max_header_lines": 20, "max_hops": 5, "bad_command_limit": 4})


def session(srv, ehlo=True):
    c = srv.connect()
    if ehlo:
        c.ehlo()
    return c


def in_transaction(srv):
    c = session(srv)
    c.mail("a@test.example")
    c.rcpt("b@test.example")
    return c


def refused(srv, c, line, code, text, mark=None):
    """Send line, expect exactly code+text, and its log line."""
    mark = srv.log_mark() if mark is None else mark
    r = c.cmd(line, code, text)
    srv.assert_failed_logged(c, mark, count=1)
    return r


# ------------------------------------------------------------------ sequence

def test_mail_before_helo(srv):
    c = session(srv, ehlo=False)
    refused(srv, c, "MAIL FROM:<a@test.example>", 503, "#5.5.1 HELO or EHLO first")
    c.quit()


@pytest.mark.parametrize("line", ["RCPT TO:<b@test.example>", "DATA"])
def test_mail_first(srv, line):
    c = session(srv)
    refused(srv, c, line, 503, "#5.5.1 MAIL first")
    c.quit()


def test_rcpt_first(srv):
    c = session(srv)
    c.mail("a@test.example")
    refused(srv, c, "DATA", 503, "#5.5.1 RCPT first")
    c.quit()


def test_nested_mail(srv):
    c = in_transaction(srv)
    refused(srv, c, "MAIL FROM:<other@test.example>", 503, "#5.5.1 Nested MAIL command")
    # the first transaction is untouched
    r = c.data(b"Subject: nested\r\n\r\nx\r\n.\r\n")
    assert r.code == 250, r
    c.quit()
    assert srv.spool_file(r.mid).field("sender") == "<a@test.example>"


# ------------------------------------------------------------------ syntax

@pytest.mark.parametrize("line", [
    "MAIL FROM:<a@test.example",
    "MAIL FROM:<a b@test.example>",
    "MAIL FROM:",
    "MAIL",
    "MAIL FROM:<@>",
    "MAIL FROM:<a@>",
    "MAIL FROM:<a@test.example>>",
    "MAIL TO:<a@test.example>",
    "MAIL FROM:<a@test..example>",
])
def test_bad_sender_path(srv, line):
    c = session(srv)
    mark = srv.log_mark()
    r = c.cmd(line, 501)
    assert r.text.startswith("#5.5.2 syntax error"), r
    srv.assert_failed_logged(c, mark, count=1)
    c.mail("ok@test.example")          # no transaction was started by the bad one
    c.quit()


@pytest.mark.parametrize("line", [
    "RCPT TO:<b@test.example", "RCPT TO:<>", "RCPT TO:", "RCPT FROM:<b@test.example>",
    "RCPT TO:<b c@test.example>", "RCPT TO:b@test.example>",
])
def test_bad_recipient_path(srv, line):
    c = session(srv)
    c.mail("a@test.example")
    mark = srv.log_mark()
    r = c.cmd(line, 501)
    assert r.text.startswith("#5.5.2 syntax error"), r
    srv.assert_failed_logged(c, mark, count=1)
    c.cmd("DATA", 503, "#5.5.1 RCPT first")
    c.quit()


def test_syntax_error_echoes_token(srv):
    c = session(srv)
    r = c.cmd("MAIL FROM:<a b@test.example>", 501)
    assert re.fullmatch(r"#5\.5\.2 syntax error \S.*", r.text), r
    c.quit()


def test_unknown_parameter(srv):
    c = session(srv)
    refused(srv, c, "MAIL FROM:<a@test.example> FOO=1", 504, "Command parameter FOO unrecognized")
    c.quit()


def test_body_unknown_value(srv):
    c = session(srv)
    refused(srv, c, "MAIL FROM:<a@test.example> BODY=9BIT", 501, "Unknown value 9BIT")
    c.quit()


def test_size_not_a_number(srv):
    c = session(srv)
    refused(srv, c, "MAIL FROM:<a@test.example> SIZE=abc", 501, "Unknown value abc")
    c.quit()


@pytest.mark.parametrize("size", ["65537", "99999999999999999999999", "18446744073709551616",
                                  "18446744073709551615", "4294967296", "4294967297"])
def test_size_above_limit(srv, size):
    c = session(srv)
    refused(srv, c, "MAIL FROM:<a@test.example> SIZE=%s" % size, 552, "size limit exceeded")
    c.quit()


def test_size_at_limit_accepted(srv):
    c = session(srv)
    c.cmd("MAIL FROM:<a@test.example> SIZE=65536", 250, "sender <a@test.example> ok")
    c.quit()


@pytest.mark.parametrize("verb", ["DATA", "RSET", "QUIT"])
def test_argument_to_argless_verb(srv, verb):
    c = in_transaction(srv)
    refused(srv, c, "%s now" % verb, 501, "#5.5.2 syntax error now")
    c.cmd("RSET", 250, "ok")
    c.quit()


@pytest.mark.parametrize("line", ["FOO", "MAILFROM:<a@test.example>", "EXPN list", "TURN",
                                  "XMRG FROM:<a@test.example>", "XDFN A=1", "XPRT 1 LAST",
                                  "STARTTLS", "BDAT 10 LAST", "ETRN test.example"])
def test_unknown_verb(srv, line):
    c = session(srv)
    refused(srv, c, line, 500, "#5.5.1 command not recognized")
    c.quit()


def test_auth_not_available(srv):
    c = session(srv)
    refused(srv, c, "AUTH PLAIN AGEAYg==", 503, "#5.3.3 AUTH not available")
    c.quit()


def test_ehlo_without_domain(srv):
    c = session(srv, ehlo=False)
    refused(srv, c, "EHLO", 501, "#5.0.0 EHLO requires domain address")
    c.quit()


def test_help_unknown_topic(srv):
    c = session(srv)
    refused(srv, c, "HELP BOGUS", 501, "Unknown command BOGUS")
    c.quit()


# ------------------------------------------------------------------ bad command limit

def test_bad_command_limit_fifth_gets_421(srv):
    c = session(srv)
    mark = srv.log_mark()
    for i in range(4):
        c.cmd("BOGUS%d" % i, 500, "#5.5.1 command not recognized")
    c.cmd("BOGUS4", 421, "Exceeded bad SMTP command limit, disconnecting")
    c.expect_closed()
    srv.assert_failed_logged(c, mark, count=5)


def test_bad_command_limit_counts_every_kind(srv):
    c = session(srv, ehlo=False)
    mark = srv.log_mark()
    c.cmd("MAIL FROM:<a@test.example>", 503)              # 503
    c.ehlo()
    c.cmd("MAIL FROM:<a@test.example> FOO=1", 504)        # 504
    c.cmd("MAIL FROM:<a b@test.example>", 501)            # 501
    c.cmd("NOOP", 250, "ok")                             # good commands do not reset the count
    c.cmd("WHAT", 500)                                   # 500
    c.cmd("RCPT TO:<b@test.example>", 421, "Exceeded bad SMTP command limit, disconnecting")
    c.expect_closed()
    srv.assert_failed_logged(c, mark, count=5)


# ------------------------------------------------------------------ line length

def test_line_of_512_is_fine_513_too_long(srv):
    c = session(srv)
    line512 = b"VRFY " + b"a" * 505                      # + CRLF = 512
    assert len(line512) + 2 == 512
    c.cmd(line512, 252)
    mark = srv.log_mark()
    c.cmd(line512 + b"a", 500, "Line too long")
    srv.assert_failed_logged(c, mark, count=1)
    c.cmd("NOOP", 250, "ok")                             # the session goes on
    c.mail("a@test.example")
    c.quit()


def test_line_too_long_in_transaction(srv):
    c = in_transaction(srv)
    mark = srv.log_mark()
    c.cmd(b"RCPT TO:<" + b"x" * 600 + b"@test.example>", 500, "Line too long")
    srv.assert_failed_logged(c, mark, count=1)
    r = c.data(b"Subject: x\r\n\r\nstill fine\r\n.\r\n")
    assert r.code == 250 and r.mid, r
    c.quit()
    assert srv.spool_file(r.mid).rcpts == [(0, "<b@test.example>")]


# ------------------------------------------------------------------ message limits

def message_of(size, fill=b"x"):
    """A message of exactly size octets (as stored), lines of 78 + CRLF."""
    head = b"Subject: size\r\n\r\n"
    out = head
    while len(out) < size:
        n = min(78, size - len(out) - 2)
        if n <= 0:
            out += fill * (size - len(out))
            break
        out += fill * n + b"\r\n"
    assert len(out) == size
    return out


def test_message_too_big_rest_dropped_session_continues(srv):
    before = srv.queue_names()
    c = in_transaction(srv)
    mark = srv.log_mark()
    c.cmd("DATA", 354)
    big = message_of(70000)
    # commands hidden in the oversized part must never be executed
    big += b"MAIL FROM:<evil@test.example>\r\nRCPT TO:<victim@test.example>\r\nDATA\r\n" * 50
    c.send(big + b".\r\n")
    c.expect(552, "#5.3.4 message size exceeds limit")
    srv.assert_failed_logged(c, mark, count=1)
    c.cmd("NOOP", 250, "ok")
    c.cmd("MAIL FROM:<next@test.example>", 250, "sender <next@test.example> ok")
    c.quit()
    assert srv.queue_names() == before
    assert "evil@test.example" not in srv.log_since(mark)


@pytest.mark.parametrize("size,ok", [(65535, True), (65536, True), (65537, False)])
def test_message_size_boundary(srv, size, ok):
    c = in_transaction(srv)
    r = c.data(message_of(size) + b".\r\n")
    if ok:
        assert r.code == 250, r
        assert srv.spool_file(r.mid).body == message_of(size)
    else:
        assert r.raw == b"552 #5.3.4 message size exceeds limit\r\n", r
    c.quit()


def test_size_counts_unstuffed_octets(srv):
    """65536 stored octets sent dot-stuffed (more on the wire) still fit."""
    body = message_of(65536, fill=b".")
    wire = b"\r\n".join((b"." + l) if l.startswith(b".") else l for l in body.split(b"\r\n"))
    c = in_transaction(srv)
    r = c.data(wire + b"\r\n.\r\n" if not wire.endswith(b"\r\n") else wire + b".\r\n")
    assert r.code == 250, r
    c.quit()
    assert srv.spool_file(r.mid).body == body


def headers(n, name=b"X-H"):
    return b"".join(b"%s-%d: v\r\n" % (name, i) for i in range(n))


def test_header_lines_at_limit_accepted(srv):
    c = in_transaction(srv)
    body = headers(20) + b"\r\nbody\r\n"
    r = c.data(body + b".\r\n")
    assert r.code == 250, r
    c.quit()
    assert srv.spool_file(r.mid).body == body


def test_header_lines_over_limit(srv):
    before = srv.queue_names()
    c = in_transaction(srv)
    mark = srv.log_mark()
    r = c.data(headers(21) + b"\r\nbody\r\nMAIL FROM:<evil@test.example>\r\n.\r\n")
    assert r.raw == b"552 #5.3.4 message header size exceeds limit\r\n", r
    srv.assert_failed_logged(c, mark, count=1)
    c.cmd("NOOP", 250, "ok")
    c.quit()
    assert srv.queue_names() == before


def test_body_lines_are_not_header_lines(srv):
    c = in_transaction(srv)
    body = b"Subject: x\r\n\r\n" + b"".join(b"Header-Like-%d: v\r\n" % i for i in range(100))
    r = c.data(body + b".\r\n")
    assert r.code == 250, r
    c.quit()


def received(n, name=b"Received"):
    return b"".join(b"%s: from hop%d.example by hop%d.example; Sat, 28 Nov 2026 19:56:22 +0000\r\n"
                    % (name, i, i + 1) for i in range(n))


def test_hops_at_limit_accepted(srv):
    c = in_transaction(srv)
    body = received(5) + b"Subject: hops\r\n\r\nx\r\n"
    r = c.data(body + b".\r\n")
    assert r.code == 250, r
    c.quit()
    assert srv.spool_file(r.mid).body == body


def test_too_many_hops(srv):
    before = srv.queue_names()
    c = in_transaction(srv)
    mark = srv.log_mark()
    r = c.data(received(6) + b"Subject: loop\r\n\r\nx\r\n.\r\n")
    assert r.raw == b"554 Too many hops\r\n", r
    srv.assert_failed_logged(c, mark, count=1)
    c.cmd("NOOP", 250, "ok")
    c.quit()
    assert srv.queue_names() == before


def test_hops_header_name_any_case(srv):
    c = in_transaction(srv)
    r = c.data(received(3) + received(3, b"RECEIVED") + b"\r\nx\r\n.\r\n")
    assert r.raw == b"554 Too many hops\r\n", r
    c.quit()


def test_received_in_body_does_not_count(srv):
    c = in_transaction(srv)
    r = c.data(b"Subject: quoted loop\r\n\r\n" + received(10) + b".\r\n")
    assert r.code == 250, r
    c.quit()


@pytest.mark.parametrize("bad", [b"bare\nLF", b"bare\rCR", b"end with CR\r", b"\n",
                                 b"x\r\r\n", b"Subject: in\nheader"])
def test_bare_cr_lf_rejected(srv, bad):
    before = srv.queue_names()
    c = in_transaction(srv)
    mark = srv.log_mark()
    r = c.data(b"Subject: bare\r\n\r\n" + bad + b"\r\nafter\r\n.\r\n")
    assert r.raw == b"554 message body contains illegal bare CR/LF characters.\r\n", r
    srv.assert_failed_logged(c, mark, count=1)
    c.cmd("NOOP", 250, "ok")
    c.quit()
    assert srv.queue_names() == before


def test_too_many_recipients(srv):
    c = session(srv)
    c.mail("a@test.example")
    for i in range(5):
        c.rcpt("r%d@test.example" % i)
    mark = srv.log_mark()
    c.cmd("RCPT TO:<r5@test.example>", 452, "#4.5.3 Too many recipients")
    srv.assert_failed_logged(c, mark, count=1)
    c.cmd("RCPT TO:<r6@test.example>", 452, "#4.5.3 Too many recipients")
    r = c.data(b"Subject: five\r\n\r\nx\r\n.\r\n")
    assert r.code == 250, r
    c.quit()
    assert [a for _, a in srv.spool_file(r.mid).rcpts] == ["<r%d@test.example>" % i
                                                          for i in range(5)]


def test_too_many_messages_per_session(srv):
    c = session(srv)
    for i in range(3):
        c.send_message()
    mark = srv.log_mark()
    c.cmd("MAIL FROM:<a@test.example>", 421, "#4.x.2 Too many messages for this session")
    c.expect_closed()
    srv.assert_failed_logged(c, mark, count=1)


def test_failed_messages_do_not_count_toward_session_limit(srv):
    c = session(srv)
    for i in range(3):
        c.mail("a@test.example")
        c.rcpt("b@test.example")
        assert c.data(b"bare\nLF\r\n.\r\n").code == 554
    for i in range(3):
        c.send_message()
    c.cmd("MAIL FROM:<a@test.example>", 421, "#4.x.2 Too many messages for this session")
    c.expect_closed()


# ------------------------------------------------------------------ timeouts

def noop_until_reply_code(c, code, timeout):
    """Send a NOOP every quarter second (waiting on the socket in between) until
    a reply with `code` comes, either to a NOOP or unasked. Returns that reply."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([c.sock], [], [], 0.25)
        if r:
            rep = c.reply()
            assert rep.code == code, "unexpected unasked reply %r" % rep.raw
            return rep
        c.line("NOOP")
        rep = c.reply()
        if rep.code == code:
            return rep
        assert rep.raw == b"250 ok\r\n", rep.raw
    raise AssertionError("no %d within %ss" % (code, timeout))


def test_command_timeout(mailgate):
    s = mailgate(limits={"command_timeout": "2s"})
    c = s.connect()
    c.ehlo()
    mark = s.log_mark()
    c.expect(421, "Timed out waiting for command, disconnecting", timeout=20)
    c.expect_closed()
    s.assert_failed_logged(c, mark, count=1)
    s.wait_closed_logged(c, mark)


def test_command_timeout_inside_data(mailgate):
    s = mailgate(limits={"command_timeout": "2s"})
    c = s.connect()
    c.ehlo()
    c.mail("a@test.example")
    c.rcpt("b@test.example")
    c.cmd("DATA", 354)
    c.send(b"Subject: stalled\r\n\r\nhalf a mess")
    mark = s.log_mark()
    r = c.reply(timeout=20)
    assert r.code == 421, r
    c.expect_closed()
    s.assert_failed_logged(c, mark, count=1)
    s.wait_closed_logged(c, mark)
    assert s.queue_mids() == [] and s.tmp_settled() == []


def test_max_connection_time(mailgate):
    s = mailgate(limits={"max_connection_time": "2s", "command_timeout": "60s"})
    c = s.connect()
    c.ehlo()
    mark = s.log_mark()
    r = noop_until_reply_code(c, 421, 20)
    assert r.raw == b"421 Exceeded allowable connection time\r\n", r
    c.expect_closed()
    s.assert_failed_logged(c, mark, count=1)


def test_max_connection_time_never_cuts_a_message(mailgate):
    """The limit is checked at end of data: a message being sent is finished first."""
    s = mailgate(limits={"max_connection_time": "2s", "command_timeout": "60s"})
    c = s.connect()
    c.ehlo()
    c.mail("a@test.example")
    c.rcpt("b@test.example")
    c.cmd("DATA", 354)
    deadline = time.monotonic() + 20
    # keep the data flowing (a line every quarter second) until the limit has passed;
    # the server must neither answer nor close in between
    n = 0
    while time.monotonic() < deadline and n < 16:
        c.send(b"line %d\r\n" % n)
        n += 1
        c.expect_silence(0.25)
    c.send(b".\r\n")
    r = c.reply()
    assert r.code in (250, 421), r
    if r.code == 421:
        assert r.text == "Exceeded allowable connection time", r
        c.expect_closed()
        assert s.queue_mids() == [], "a message answered with 421 was kept"
    else:
        c.line("NOOP")
        c.expect(421, "Exceeded allowable connection time")


def test_injection_timeout_public_listener(mailgate):
    s = mailgate(listener_type="public",
                 hat=[{"group": "ALLHOSTS", "hosts": ["ALL"], "policy": "ACCEPTED"}],
                 policies={"ACCEPTED": {"action": "accept"}},
                 rat=[{"recipient": "test.example", "action": "accept"},
                      {"recipient": "ALL", "action": "reject"}],
                 limits={"injection_timeout": "2s", "command_timeout": "60s"})
    c = s.connect()
    c.ehlo()
    mark = s.log_mark()
    r = noop_until_reply_code(c, 421, 20)
    assert r.raw == b"421 Timed out waiting for successful message injection, disconnecting.\r\n", r
    c.expect_closed()
    s.assert_failed_logged(c, mark, count=1)


# ------------------------------------------------------------------ policy / listener refusals

def test_rat_rejects_recipient_on_public_listener(mailgate):
    s = mailgate(listener_type="public",
                 hat=[{"group": "ALLHOSTS", "hosts": ["ALL"], "policy": "ACCEPTED"}],
                 policies={"ACCEPTED": {"action": "accept"}},
                 rat=[{"recipient": "test.example", "action": "accept"},
                      {"recipient": "ALL", "action": "reject"}])
    c = s.connect()
    c.ehlo()
    c.mail("a@else.example")
    c.rcpt("ok@test.example")
    mark = s.log_mark()
    c.cmd("RCPT TO:<no@other.example>", 550, "#5.1.0 Address rejected")
    s.assert_failed_logged(c, mark, count=1)
    s.assert_log(r"Info: MID \d+ ICID %d To: <no@other\.example> Rejected by RAT$" % c.icid, mark)
    r = c.data(b"Subject: rat\r\n\r\nx\r\n.\r\n")
    assert r.code == 250
    c.quit()
    assert s.spool_file(r.mid).rcpts == [(0, "<ok@test.example>")]


@pytest.mark.parametrize("pol,reply", [
    ({"action": "reject"}, "554 %s Access denied" % HOSTNAME),
    ({"action": "reject", "reject_code": 550, "reject_text": "Go away"}, "550 %s Go away" % HOSTNAME),
])
def test_hat_reject(mailgate, pol, reply):
    s = mailgate(hat=[{"group": "BLOCKLIST", "hosts": ["127.0.0.0/8"], "policy": "BLOCKED"}],
                 policies={"BLOCKED": pol})
    mark = s.log_mark()
    c = s.raw_connect()
    assert c.reply().first == reply
    c.expect_closed()
    s.assert_log(r"Info: ICID \d+ REJECT SG BLOCKLIST match 127\.0\.0\.0/8$", mark)
    s.assert_failed_logged(None, mark, count=1)


def test_hat_tcprefuse(mailgate):
    s = mailgate(hat=[{"group": "NOPE", "hosts": ["127.0.0.1"], "policy": "REFUSED"}],
                 policies={"REFUSED": {"action": "tcprefuse"}})
    mark = s.log_mark()
    c = s.raw_connect()
    c.expect_closed()
    s.wait_log(r"Info: ICID 0 TCPREFUSE SG NOPE match 127\.0\.0\.1$", mark)


def test_banner_code_and_text(mailgate):
    s = mailgate(policy={"banner_code": 220, "banner_text": "Hello there"})
    c = s.raw_connect()
    assert c.reply().raw == b"220 %s Hello there\r\n" % HOSTNAME.encode()
    c.quit()


@pytest.mark.parametrize("kw,text", [
    ({"listener": {"max_connections": 2}}, "#4.4.5 Too many connections to this listener"),
    ({"limits": {"max_connections": 2}}, "#4.4.5 Too many connections to this host"),
    ({"policy": {"max_connections_per_host": 2}}, "#4.4.5 Too many connections from your host"),
])
def test_connection_limits(mailgate, kw, text):
    s = mailgate(**kw)
    a = s.connect()
    b = s.connect()
    mark = s.log_mark()
    c = s.raw_connect()
    c.expect(421, text)
    c.expect_closed()
    s.assert_failed_logged(None, mark, count=1)
    a.ehlo()                                  # the admitted ones are still served
    a.send_message()
    a.quit()

    def admitted():
        d = s.raw_connect()
        r = d.reply()
        if r.code == 220:
            return d
        d.expect_closed()
        return None
    d = poll_until(admitted, 10, 0.1, "a slot to free up after a client left")
    d.ehlo()
    d.send_message()
    d.quit()
    b.quit()


def test_queue_full(mailgate):
    s = mailgate(limits={"queue_max_messages": 2})
    c = s.connect()
    c.ehlo()
    c.send_message()
    c.send_message()
    mark = s.log_mark()
    c.cmd("MAIL FROM:<a@test.example>", 452, "#4.3.1 queue full")
    s.assert_failed_logged(c, mark, count=1)
    c.cmd("NOOP", 250, "ok")
    c.quit()
    assert len(s.queue_mids()) == 2


# ------------------------------------------------------------------ line endings in commands

@pytest.mark.parametrize("line,code,prefix", [
    (b"MAIL FROM:<a@test.example>\nRCPT TO:<b@test.example>", 501, "#5.5.2 syntax error"),
    (b"RSET x\nQUIT", 501, "#5.5.2 syntax error"),
    # is "RSET<LF>QUIT" the verb RSET with junk (501) or an unknown verb (500)? either
    (b"RSET\nQUIT", (500, 501), "#5.5."),
    (b"HELO x.example\nQUIT", 501, "#5.5.2 syntax error"),
    (b"BOGUS\nQUIT", 500, "#5.5.1 command not recognized"),
    (b"\nQUIT", 500, "#5.5.1 command not recognized"),
], ids=["mail", "rset-arg", "rset", "helo", "unknown", "leading-lf"])
def test_bare_lf_inside_command_line(srv, line, code, prefix):
    """Commands end only with CRLF: a bare LF does not split a line in two."""
    c = session(srv)
    mark = srv.log_mark()
    r = c.cmd(line)
    assert r.code in (code if isinstance(code, tuple) else (code,)), r
    assert r.text.startswith(prefix), r
    srv.assert_failed_logged(c, mark, count=1)
    c.cmd("NOOP", 250, "ok")              # the QUIT after the LF was not executed
    c.cmd("RCPT TO:<b@test.example>", 503, "#5.5.1 MAIL first")
    c.quit()


def test_bare_cr_lf_accepted_byte_for_byte(mailgate):
    s = mailgate(policy={"bare_crlf": "accept"})
    c = s.connect()
    c.ehlo()
    c.mail("a@test.example")
    c.rcpt("b@test.example")
    body = b"Subject: bare\r\n\r\nbare\nLF\r\nbare\rCR\r\n\r\r\n\n\r\nend\r"
    r = c.data(body + b"\r\n.\r\n")
    assert r.code == 250, r
    c.quit()
    assert s.spool_file(r.mid).body == body + b"\r\n"
