"""Hostile input, class 4 of spec/hostile.md: STARTTLS injection (CVE-2011-0411 and
the 2021 "STARTTLS" paper).

Commands in the same packet as STARTTLS are discarded, never answered before or
after the handshake; after TLS the session is as before EHLO (no sender, no
recipients, no AUTH); STARTTLS twice, or with an argument, is refused; a
plaintext line instead of a ClientHello ends the connection.

The STARTTLS line goes three ways (hostilelib.py): one write, one byte per write,
random splits; the injected commands always travel in the same write as its last
byte, so they are in the server's buffer before it answers (bytes sent after the
220 would be the client's own handshake, not an injection). The last test checks
the server still serves and holds nothing more than before the class."""

import re
import time

import pytest

from conftest import HOSTNAME
from hostilelib import WAYS, assert_left_clean, hostile_server, seed_for
from smtpclient import split_chunks
from tlsauth import CLIENT_NAME, ehlo_keywords, make_certs, plain, starttls, tls_wrap

TLS_FAILED = r"Info: ICID %d TLS failed: \S.*$"

INJECTIONS = {
    "mail": b"MAIL FROM:<injected@evil.example>\r\n",
    "ehlo": b"EHLO injected.example\r\n",
    "transaction": (b"MAIL FROM:<injected@evil.example>\r\nRCPT TO:<victim@test.example>\r\n"
                    b"DATA\r\n"),
    "quit": b"QUIT\r\n",
    "noop": b"NOOP\r\n",
    "auth": b"AUTH PLAIN " + plain("alice", "secret").encode() + b"\r\n",
    "all": (b"NOOP\r\nEHLO injected.example\r\nAUTH PLAIN " +
            plain("alice", "secret").encode() + b"\r\nMAIL FROM:<injected@evil.example>\r\n"),
}

BODY = b"Subject: over TLS\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def srv(mailgate_module, tmp_path_factory):
    certs = make_certs(tmp_path_factory)
    return hostile_server(mailgate_module,
                          policy={"tls": "preferred", "auth": "preferred",
                                  "max_messages_per_connection": 0},
                          limits={"bad_command_limit": 20},
                          top={"tls": certs["rsa"].conf, "auth": {"users": certs["users"]}})


def check_injection_ignored(srv, c, mark):
    """After the handshake, the next reply is the EHLO's, then the NOOP's: nothing of
    what was sent with STARTTLS is ever answered or acted on."""
    r = c.ehlo("after.test.example")
    assert r.lines[0] == HOSTNAME and "STARTTLS" not in ehlo_keywords(r), r
    # not authenticated by an injected AUTH: AUTH is still offered
    assert "AUTH PLAIN LOGIN" in ehlo_keywords(r), r
    c.cmd("NOOP", 250, "ok")
    mid = c.send_message(body=BODY)
    c.quit()
    sf = srv.spool_file(mid)
    assert sf.field("helo") == "after.test.example"
    assert sf.field("sender") == "<sender@test.example>"
    log = srv.log_since(mark)
    assert "injected" not in log and "victim" not in log and "SMTP Auth" not in log, log
    assert not re.search(r"ICID %d Receiving Failed" % c.icid, log), log


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("what", sorted(INJECTIONS))
def test_class4_injection_is_discarded(srv, what, way):
    c = srv.connect()
    c.ehlo(CLIENT_NAME)
    mark = srv.log_mark()
    head = b"NOOP\r\nSTARTTLS\r\n"
    pieces = split_chunks(head, way, seed_for("starttls", what, way))
    pieces[-1] += INJECTIONS[what]
    for p in pieces:
        c.sock.sendall(p)
    c.expect(250, "ok")
    c.expect(220, "Go ahead with TLS")
    tls_wrap(c)         # fails if anything but the 220 came in the clear
    check_injection_ignored(srv, c, mark)


def test_class4_after_starttls_the_session_is_as_before_ehlo(srv):
    c = srv.connect()
    c.ehlo(CLIENT_NAME)
    starttls(c)
    mark = srv.log_mark()
    c.cmd("MAIL FROM:<sender@test.example>", 503, "#5.5.1 HELO or EHLO first")
    srv.assert_failed_logged(c, mark)
    c.ehlo(CLIENT_NAME)
    c.send_message(body=BODY)
    c.quit()


def test_class4_starttls_forgets_the_transaction_state(srv):
    """A transaction abandoned with RSET before STARTTLS, and the greeting, are gone."""
    c = srv.connect()
    c.ehlo("before.test.example")
    c.mail("before@test.example")
    c.rcpt("rcpt@test.example")
    c.cmd("RSET", 250, "ok")
    starttls(c)
    c.cmd("MAIL FROM:<sender@test.example>", 503, "#5.5.1 HELO or EHLO first")
    c.ehlo("after.test.example")
    c.cmd("RCPT TO:<rcpt@test.example>", 503, "#5.5.1 MAIL first")
    c.cmd("DATA", 503, "#5.5.1 MAIL first")
    mid = c.send_message(body=BODY)
    c.quit()
    assert srv.spool_file(mid).field("helo") == "after.test.example"


def test_class4_starttls_twice_or_with_an_argument(srv):
    c = srv.connect()
    c.ehlo(CLIENT_NAME)
    mark = srv.log_mark()
    c.cmd("STARTTLS now", 501, "#5.5.2 syntax error now")
    c.mail("sender@test.example")
    c.cmd("STARTTLS", 503, "#5.5.0 STARTTLS not permitted during a mail transaction")
    srv.assert_failed_logged(c, mark, count=2)
    # the transaction goes on, and STARTTLS works once it is over
    c.rcpt("rcpt@test.example")
    assert c.data(b"Subject: x\r\n\r\ny\r\n.\r\n").code == 250
    starttls(c)
    c.ehlo(CLIENT_NAME)
    mark = srv.log_mark()
    c.cmd("STARTTLS", 503, "#5.5.1 TLS already active")
    c.cmd("STARTTLS now", 501, "#5.5.2 syntax error now")
    srv.assert_failed_logged(c, mark, count=2)
    # still inside the same TLS session, still serving
    c.send_message(body=BODY)
    c.quit()


@pytest.mark.parametrize("way", WAYS)
def test_class4_plaintext_instead_of_client_hello(srv, way):
    """A plaintext line where the ClientHello belongs ends the connection, with
    logs.md's 'TLS failed' line, and is never answered as a command."""
    c = srv.connect()
    c.ehlo(CLIENT_NAME)
    c.cmd("STARTTLS", 220, "Go ahead with TLS")
    mark = srv.log_mark()
    try:
        c.line("MAIL FROM:<sender@test.example>", way, seed_for("plaintext-hello", way))
    except (BrokenPipeError, ConnectionResetError):
        pass        # split writes: the server may close on the first bytes, as it should
    while True:
        try:
            ok = c._fill(time.monotonic() + 15)
        except TimeoutError:
            raise AssertionError("the connection was not closed (got %r)" % c.buf) from None
        if not ok:
            break
    got = c.buf
    # at most a TLS alert record (content type 21), never an SMTP reply
    assert got == b"" or got[:1] == b"\x15", got
    srv.wait_log(TLS_FAILED % c.icid, mark)
    assert "From: <sender@test.example>" not in srv.log_since(mark)
    srv.wait_log(r"Info: ICID %d close$" % c.icid, mark)


def test_class4_zz_left_clean(srv):
    """The server still serves, and holds no more descriptors or heap than before."""
    assert_left_clean(srv)
