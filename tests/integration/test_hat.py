"""Issue 3: the Host Access Table on connect (every host form, top to bottom,
first match wins), the policy actions (accept, relay, reject, tcprefuse,
continue), the banner and reject texts per policy, the HAT log lines, and a private
listener without a RAT. hostile.md 11 (no open relay through any address trick) is
test_hostile_11_open_relay.py.

One server for the module: clients come from different 127/8 addresses (and
::1), each matching a different rule. No DNS here: reverse_lookups is off, so
every client is "unknown" (the name forms are in test_hat_dns.py)."""

import re
import socket

import pytest

from conftest import HOST, HOSTNAME
from hatlib import add_listener, connect_from, new_icids, served_from
from smtpclient import Client

BANNER_ESMTP = ("220 %s ESMTP\r\n" % HOSTNAME).encode()
BANNER_HELLO = ("220 %s Hello\r\n" % HOSTNAME).encode()

HAT = [
    # continue: matches everyone and must be skipped, never decide
    {"group": "SKIP", "hosts": ["127.0.0.0/8", "ALL"], "policy": "SKIPPED"},
    {"group": "REFUSE", "hosts": ["127.0.0.9"], "policy": "REFUSED"},
    {"group": "BLOCK", "hosts": ["127.0.0.5"], "policy": "BLOCKED"},
    {"group": "DENY", "hosts": ["127.0.0.6"], "policy": "DENIED"},
    {"group": "SINGLE", "hosts": ["127.0.0.2", "127.0.0.3"], "policy": "RELAYED"},
    {"group": "RANGE", "hosts": ["127.0.0.10-20"], "policy": "RELAYED"},
    # overlaps RANGE (10..15) and REFUSE (9): the earlier rule wins there
    {"group": "CIDR", "hosts": ["127.0.0.8/29"], "policy": "RELAYED"},
    {"group": "PARTIAL", "hosts": ["127.0.1."], "policy": "RELAYED"},
    {"group": "PARTIAL2", "hosts": ["127.1."], "policy": "RELAYED"},
    {"group": "V6", "hosts": ["::1"], "policy": "RELAYED"},
    {"group": "ALL", "hosts": ["ALL"], "policy": "ACCEPTED"},
]
POLICIES = {
    "ACCEPTED": {"action": "accept", "banner_code": 220, "banner_text": "Hello"},
    "BLOCKED": {"action": "reject", "reject_code": 550, "reject_text": "Go away"},
    "DENIED": {"action": "reject"},
    "REFUSED": {"action": "tcprefuse"},
    "SKIPPED": {"action": "continue", "banner_text": "wrongly matched a continue rule"},
}
RAT = [{"recipient": "example.com", "action": "accept"},
       {"recipient": "ALL", "action": "reject"}]


def have_ipv6():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


IPV6 = have_ipv6()


@pytest.fixture(scope="module")
def srv(mailgate_module):
    s = mailgate_module(start=False, listener_type="public", hat=HAT, rat=RAT,
                        policies=POLICIES)
    if IPV6:
        s.port6 = free_port_v6()
        s.settings["listeners"][0]["listen"].append("[::1]:%d" % s.port6)
    # a private listener: the same HAT, but no RAT for accept policies
    s.private_port = add_listener(s, "private", type="private")
    s.settings["listeners"][1].pop("rat")
    s.write_config()
    s.start()
    return s


def free_port_v6():
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as so:
        so.bind(("::1", 0))
        return so.getsockname()[1]


def v6_client(srv):
    c = Client("::1", srv.port6, 15.0)
    srv.clients.append(c)
    return c


def hat_lines(srv, mark, source, listener="default", local=HOST):
    """The connection's two HAT log lines; returns (icid, action, group, entry)."""
    text = srv.log_since(mark)
    m = re.search(r"Info: New SMTP ICID (\d+) interface %s \(%s\) address %s reverse dns host "
                  r"unknown verified no$" % (re.escape(listener), re.escape(local),
                                             re.escape(source)), text, re.M)
    assert m, "no 'New SMTP ICID' line for %s:\n%s" % (source, text[-2000:])
    icid = m.group(1)
    m2 = re.search(r"Info: ICID %s (\S+) SG (\S+) match (\S+)$" % icid, text, re.M)
    assert m2, "no 'ICID %s <action> SG <group> match <entry>' line:\n%s" % (icid, text[-2000:])
    assert m.start() < m2.start(), "the HAT line was written before the New SMTP line"
    return int(icid), m2.group(1), m2.group(2), m2.group(3)


# ------------------------------------------------------------------ host forms, order

@pytest.mark.parametrize("source,action,group,entry,banner", [
    ("127.0.0.2", "RELAY", "SINGLE", "127.0.0.2", BANNER_ESMTP),
    ("127.0.0.3", "RELAY", "SINGLE", "127.0.0.3", BANNER_ESMTP),      # 2nd host of a rule
    ("127.0.0.10", "RELAY", "RANGE", "127.0.0.10-20", BANNER_ESMTP),  # range start
    ("127.0.0.20", "RELAY", "RANGE", "127.0.0.10-20", BANNER_ESMTP),  # range end
    ("127.0.0.12", "RELAY", "RANGE", "127.0.0.10-20", BANNER_ESMTP),  # also in CIDR: first wins
    ("127.0.0.8", "RELAY", "CIDR", "127.0.0.8/29", BANNER_ESMTP),
    ("127.0.0.15", "RELAY", "RANGE", "127.0.0.10-20", BANNER_ESMTP),  # CIDR's last, RANGE first
    ("127.0.0.21", "ACCEPT", "ALL", "ALL", BANNER_HELLO),              # one past the range
    ("127.0.0.7", "ACCEPT", "ALL", "ALL", BANNER_HELLO),               # one before the CIDR
    ("127.0.1.7", "RELAY", "PARTIAL", "127.0.1.", BANNER_ESMTP),
    ("127.0.1.255", "RELAY", "PARTIAL", "127.0.1.", BANNER_ESMTP),
    ("127.0.2.1", "ACCEPT", "ALL", "ALL", BANNER_HELLO),               # not the partial
    ("127.1.2.3", "RELAY", "PARTIAL2", "127.1.", BANNER_ESMTP),      # two-octet partial
    ("127.0.0.1", "ACCEPT", "ALL", "ALL", BANNER_HELLO),
])
def test_host_forms_first_match_wins(srv, source, action, group, entry, banner):
    mark = srv.log_mark()
    c = connect_from(srv, source)
    r = c.reply()
    assert r.raw == banner, "client %s: expected %r, got %r" % (source, banner, r.raw)
    icid, got_action, got_group, got_entry = hat_lines(srv, mark, source)
    assert (got_action, got_group, got_entry) == (action, group, entry), \
        "client %s: expected ICID %d %s SG %s match %s, got %s SG %s match %s" % (
            source, icid, action, group, entry, got_action, got_group, got_entry)
    c.ehlo()
    c.quit()


@pytest.mark.skipif(not IPV6, reason="no IPv6 loopback here")
def test_ipv6_address_entry(srv):
    mark = srv.log_mark()
    c = v6_client(srv)
    r = c.reply()
    assert r.raw == BANNER_ESMTP, r
    icid, action, group, entry = hat_lines(srv, mark, "::1", local="::1")
    assert (action, group, entry) == ("RELAY", "V6", "::1")
    c.ehlo()
    # relay: any recipient, not only the RAT's
    mid = c.send_message(rcpts=("user@evil.example",))
    c.quit()
    sf = srv.spool_file(mid)
    assert sf.rcpts == [(0, "<user@evil.example>")]
    assert sf.field("client") == "::1"


def test_continue_rule_never_decides(srv):
    """SKIP matches every client but its policy is continue: in every HAT line
    written so far (and for a new client) it never appears."""
    mark = srv.log_mark()
    c = connect_from(srv, "127.0.0.30")
    assert c.reply().raw == BANNER_HELLO
    _, action, group, entry = hat_lines(srv, mark, "127.0.0.30")
    assert (action, group, entry) == ("ACCEPT", "ALL", "ALL")
    c.quit()
    assert not re.search(r"SG SKIP ", srv.log_text()), "a continue rule decided a match"
    assert "wrongly matched" not in srv.log_text()


# ------------------------------------------------------------------ reject, tcprefuse

@pytest.mark.parametrize("source,reply,group", [
    ("127.0.0.5", "550 %s Go away" % HOSTNAME, "BLOCK"),
    ("127.0.0.6", "554 %s Access denied" % HOSTNAME, "DENY"),
])
def test_reject_policy(srv, source, reply, group):
    mark = srv.log_mark()
    c = connect_from(srv, source)
    r = c.reply()
    assert r.raw == (reply + "\r\n").encode(), r
    c.expect_closed()
    icid, action, got_group, entry = hat_lines(srv, mark, source)
    assert (action, got_group, entry) == ("REJECT", group, source)
    srv.assert_log(r"Info: ICID %d Receiving Failed: \S.*$" % icid, mark)
    srv.wait_log(r"Info: ICID %d close$" % icid, mark)
    # another address is still served
    served_from(srv, "127.0.0.2", banner=BANNER_ESMTP)


def test_tcprefuse(srv):
    mark = srv.log_mark()
    c = connect_from(srv, "127.0.0.9")
    c.expect_closed()
    assert c.transcript == [], "tcprefuse sent bytes: %r" % c.transcript
    srv.wait_log(r"Info: ICID 0 TCPREFUSE SG REFUSE match 127\.0\.0\.9$", mark)
    srv.assert_log(r"Info: New SMTP ICID 0 interface default \(127\.0\.0\.1\) address 127\.0\.0\.9 "
                   r"reverse dns host unknown verified no$", mark)
    assert new_icids(srv, mark, "127.0.0.9") == [0]
    served_from(srv, "127.0.0.3", banner=BANNER_ESMTP)


def test_banner_per_policy(srv):
    """The same listener, two policies: each client gets its policy's banner."""
    a = connect_from(srv, "127.0.0.1")
    b = connect_from(srv, "127.0.0.2")
    assert a.reply().raw == BANNER_HELLO
    assert b.reply().raw == BANNER_ESMTP
    a.quit()
    b.quit()


def test_private_listener_has_no_rat(srv):
    """An accept policy on a private listener takes any recipient."""
    mark = srv.log_mark()
    c = connect_from(srv, "127.0.0.1", port=srv.private_port)
    assert c.reply().raw == BANNER_HELLO
    _, action, group, _ = hat_lines(srv, mark, "127.0.0.1", listener="private")
    assert (action, group) == ("ACCEPT", "ALL")
    c.ehlo()
    mid = c.send_message(rcpts=("user@evil.example",))
    c.quit()
    assert srv.spool_file(mid).rcpts == [(0, "<user@evil.example>")]
