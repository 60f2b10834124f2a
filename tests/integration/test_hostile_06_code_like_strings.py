"""Hostile input, class 6 of spec/hostile.md: strings that look like code.

Each case where bytes matter is sent three ways (hostilelib.py); the last test
checks the server still serves and holds nothing more than before the class."""

import os
import re

import pytest

from conftest import HOSTNAME
from hostilelib import WAYS, assert_left_clean, assert_log_well_formed, hostile_server, seed_for, transaction


@pytest.fixture(scope="module")
def srv(mailgate_module):
    """Defaults (bare_crlf = reject, 10M, 1000 header lines, 50 recipients), no message cap."""
    return hostile_server(mailgate_module, policy={"max_messages_per_connection": 0})


@pytest.fixture(scope="module")
def srv_accept(mailgate_module):
    return hostile_server(mailgate_module, policy={"max_messages_per_connection": 0, "bare_crlf": "accept"})


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


def test_class6_zz_left_clean(srv, srv_accept):
    """The server still serves, and holds no more descriptors or heap than before."""
    assert_left_clean(srv, srv_accept)
