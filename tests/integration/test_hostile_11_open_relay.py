"""Hostile input, class 11 of spec/hostile.md: open relay.

`user%host@local`, `user@host@local`, `"user@host"@local`, `host!user@local`, source
routes `@a,@b:user@host`, IP literals: none relays unless the policy says relay.
A public listener with a RAT accepting example.com only: 127.0.0.4 is "outside"
(an accept policy: the RAT applies), the rest of 127/8 matches a relay policy (it
does not). The RCPT
lines go three ways (hostilelib.py); the last test checks the server still serves
and holds nothing more than before the class."""

import re

import pytest

from conftest import HOSTNAME
from hatlib import connect_from
from hostilelib import WAYS, assert_left_clean, hostile_server, seed_for

BANNER_ESMTP = ("220 %s ESMTP\r\n" % HOSTNAME).encode()
BANNER_HELLO = ("220 %s Hello\r\n" % HOSTNAME).encode()
HAT = [
    {"group": "OUTSIDE", "hosts": ["127.0.0.4"], "policy": "ACCEPTED"},
    {"group": "RELAYLIST", "hosts": ["127.0.0.0/8"], "policy": "RELAYED"},
]
POLICIES = {
    "ACCEPTED": {"action": "accept", "banner_code": 220, "banner_text": "Hello",
                 "max_messages_per_connection": 0},
}
RAT = [{"recipient": "example.com", "action": "accept"},
       {"recipient": "ALL", "action": "reject"}]


@pytest.fixture(scope="module")
def srv(mailgate_module):
    s = hostile_server(mailgate_module, listener_type="public", hat=HAT, rat=RAT,
                       policies=POLICIES, policy={"max_messages_per_connection": 0})
    return s


RAT_OK = [
    "user@example.com",
    "USER@Example.COM",
    "user%evil.example@example.com",          # % hack: judged at example.com
    '"user@evil.example"@example.com',        # quoted local part
    "evil.example!user@example.com",          # bang path: judged at example.com
]
RAT_REFUSED = [
    "user@evil.example",
    "@example.com:user@evil.example",         # source route: judged on evil.example
    "@example.com,@example.com:user@evil.example",
    "user@[127.0.0.1]",                       # IP literal: not in the RAT
    "user@sub.example.com",                   # the RAT names example.com, not .example.com
    "user@example.com.evil.example",
    "user@evilexample.com",
]


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("rcpt", RAT_OK)
def test_class11_rat_accepts_real_domain(srv, rcpt, way):
    c = connect_from(srv, "127.0.0.4")
    assert c.reply().raw == BANNER_HELLO
    c.ehlo()
    c.mail("sender@else.example")
    c.line("RCPT TO:<%s>" % rcpt, way, seed_for("ok", rcpt, way))
    c.expect(250, "recipient <%s> ok" % rcpt)
    r = c.data(b"Subject: rat\r\n\r\nx\r\n.\r\n")
    assert r.code == 250 and r.mid, r
    c.quit()
    assert srv.spool_file(r.mid).rcpts == [(0, "<%s>" % rcpt)]


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("rcpt", RAT_REFUSED)
def test_class11_rat_refuses_other_domains(srv, rcpt, way):
    c = connect_from(srv, "127.0.0.4")
    assert c.reply().raw == BANNER_HELLO
    c.ehlo()
    c.mail("sender@else.example")
    mark = srv.log_mark()
    c.line("RCPT TO:<%s>" % rcpt, way, seed_for("refused", rcpt, way))
    r = c.reply()
    assert r.raw == b"550 #5.1.0 Address rejected\r\n", "RCPT TO:<%s>: %r" % (rcpt, r.raw)
    # the line names the recipient: the mailbox judged (a source route dropped)
    srv.assert_log(r"Info: MID \d+ ICID \d+ To: <%s> Rejected by RAT$"
                   % re.escape(rcpt.split(":")[-1]), mark)
    srv.assert_log(r"Info: ICID \d+ Receiving Failed: \S.*$", mark)
    # the transaction goes on: a good recipient, and only it, is kept
    c.rcpt("ok@example.com")
    r = c.data(b"Subject: rat\r\n\r\nx\r\n.\r\n")
    assert r.code == 250, r
    c.quit()
    assert srv.spool_file(r.mid).rcpts == [(0, "<ok@example.com>")]


@pytest.mark.parametrize("rcpt", [
    "user@evil.example@example.com",
    "user@example.com%evil.example",
    "user@evil.example%example.com",
    "user@evil.example.",
    "user@[IPv6:::1]",
])
def test_class11_rat_never_accepts_malformed_tricks(srv, rcpt):
    """Whether a syntax error (501) or a RAT refusal (550): never a 250."""
    c = connect_from(srv, "127.0.0.4")
    assert c.reply().raw == BANNER_HELLO
    c.ehlo()
    c.mail("sender@else.example")
    r = c.cmd("RCPT TO:<%s>" % rcpt)
    assert r.code in (501, 550), "RCPT TO:<%s>: %r" % (rcpt, r.raw)
    if r.code == 550:
        assert r.raw == b"550 #5.1.0 Address rejected\r\n", r
    c.quit()


def test_class11_relay_policy_skips_rat(srv):
    """127.0.0.2 matches a relay policy on the same public listener: any recipient."""
    c = connect_from(srv, "127.0.0.2")
    assert c.reply().raw == BANNER_ESMTP
    c.ehlo()
    mid = c.send_message(rcpts=("user@evil.example", "user@[127.0.0.1]", "x@example.com"))
    c.quit()
    assert [a for _, a in srv.spool_file(mid).rcpts] == [
        "<user@evil.example>", "<user@[127.0.0.1]>", "<x@example.com>"]


def test_class11_zz_left_clean(srv):
    """The server still serves, and holds no more descriptors or heap than before."""
    assert_left_clean(srv)
