"""Issue 3: HAT hostname and .suffix entries, end to end, matched on the client's
verified reverse name. The only DNS server is the stub this module runs on
127.0.0.1 (dns.resolvers), with a hosts file of our own (/etc/hosts would
answer for 127.0.0.1 first); every query it saw must be one of ours."""

import json
import re

import pytest

from conftest import HOSTNAME, poll_until
from dnsstub import DnsStub, reverse
from hatlib import connect_from, fd_list, settled_fds

DNS_TIMEOUT = "2s"

RECORDS = {
    # PTR and A agree: verified
    reverse("127.0.0.2"): {"PTR": ["mail.good.example"]},
    "mail.good.example": {"A": ["127.0.0.2"]},
    reverse("127.0.0.3"): {"PTR": ["mx3.trusted.example"]},
    "mx3.trusted.example": {"A": ["127.0.0.3"]},
    reverse("127.0.0.8"): {"PTR": ["Upper.Trusted.Example."]},
    "upper.trusted.example": {"A": ["127.0.0.8"]},
    # a PTR claiming a name whose forward lookup is another address: not verified
    reverse("127.0.0.4"): {"PTR": ["mail.good.example"]},
    reverse("127.0.0.6"): {"PTR": ["fake.trusted.example"]},
    "fake.trusted.example": {"A": ["192.0.2.1"]},
    # verified, but only looks like the suffix
    reverse("127.0.0.13"): {"PTR": ["badtrusted.example"]},
    "badtrusted.example": {"A": ["127.0.0.13"]},
    # 127.0.0.5: no PTR at all (NXDOMAIN)
    # 127.0.0.7: the server never answers
    reverse("127.0.0.7"): "DROP",
    # asked only after the dropped query
    reverse("127.0.0.15"): {"PTR": ["late.trusted.example"]},
    "late.trusted.example": {"A": ["127.0.0.15"]},
}
OUR_NAMES = {n.lower().rstrip(".") for n in RECORDS} | {reverse("127.0.0.5"),
                                                      reverse("127.0.0.1")}

HAT = [
    {"group": "NAMED", "hosts": ["mail.good.example"], "policy": "NAMEDPOL"},
    {"group": "SUFFIX", "hosts": [".trusted.example"], "policy": "SUFFIXPOL"},
    {"group": "ALL", "hosts": ["ALL"], "policy": "RELAYED"},
]
POLICIES = {
    "NAMEDPOL": {"action": "relay", "banner_text": "named"},
    "SUFFIXPOL": {"action": "relay", "banner_text": "suffix"},
}


def banner(text):
    return ("220 %s %s\r\n" % (HOSTNAME, text)).encode()


@pytest.fixture(scope="module")
def stub():
    s = DnsStub(RECORDS).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def srv(mailgate_module, stub, tmp_path_factory):
    hosts = tmp_path_factory.mktemp("dns") / "hosts"
    # no line for 127.0.0.1; one client named by the file alone
    hosts.write_text("127.0.0.9 fromfile.trusted.example\n")
    return mailgate_module(hat=HAT, policies=POLICIES, top={"dns": {
        "resolvers": [stub.resolver], "reverse_lookups": True,
        "hosts_file": str(hosts), "timeout": DNS_TIMEOUT}})


def identified(srv, mark, source):
    """(icid, name, verified, action, group, entry) from the connection's log lines."""
    text = srv.log_since(mark)
    m = re.search(r"Info: New SMTP ICID (\d+) interface default \(127\.0\.0\.1\) address %s "
                  r"reverse dns host (\S+) verified (yes|no)$" % re.escape(source), text, re.M)
    assert m, "no 'New SMTP ICID' line for %s:\n%s" % (source, text[-2000:])
    m2 = re.search(r"Info: ICID %s (\S+) SG (\S+) match (\S+)$" % m.group(1), text, re.M)
    assert m2, "no HAT line for ICID %s:\n%s" % (m.group(1), text[-2000:])
    return (int(m.group(1)), m.group(2), m.group(3)) + m2.groups()


def session(srv, source, expect_banner):
    """Connect from source, check the banner, send one message, quit; returns the log facts."""
    mark = srv.log_mark()
    c = connect_from(srv, source)
    r = c.reply()
    assert r.raw == expect_banner, "client %s: expected %r, got %r" % (source, expect_banner, r.raw)
    c.ehlo()
    mid = c.send_message()
    c.quit()
    assert mid in srv.queue_mids()
    return identified(srv, mark, source)


def test_hostname_entry_matches_verified_name(srv, stub):
    icid, name, verified, action, group, entry = session(srv, "127.0.0.2", banner("named"))
    assert (name, verified) == ("mail.good.example", "yes")
    assert (action, group, entry) == ("RELAY", "NAMED", "mail.good.example")
    assert stub.count(reverse("127.0.0.2"), "PTR") >= 1
    assert stub.count("mail.good.example", "A") >= 1


@pytest.mark.parametrize("source,name", [
    ("127.0.0.3", "mx3.trusted.example"),
    ("127.0.0.8", "upper.trusted.example"),       # the PTR in capitals, absolute
])
def test_suffix_entry_matches(srv, stub, source, name):
    icid, got_name, verified, action, group, entry = session(srv, source, banner("suffix"))
    assert (got_name, verified) == (name, "yes")
    assert (action, group, entry) == ("RELAY", "SUFFIX", ".trusted.example")


@pytest.mark.parametrize("source,name", [
    ("127.0.0.4", "mail.good.example"),           # claims the NAMED host's name
    ("127.0.0.6", "fake.trusted.example"),        # claims a name under the suffix
])
def test_unverified_name_falls_to_next_rule(srv, stub, source, name):
    icid, got_name, verified, action, group, entry = session(srv, source, banner("ESMTP"))
    assert (got_name, verified) == (name, "no")
    assert (action, group, entry) == ("RELAY", "ALL", "ALL"), \
        "a name that does not verify matched %s %s" % (group, entry)
    assert stub.count(name, "A") >= 1, "the forward lookup was never asked"


def test_suffix_needs_a_dot_boundary(srv, stub):
    icid, name, verified, action, group, entry = session(srv, "127.0.0.13", banner("ESMTP"))
    assert (name, verified) == ("badtrusted.example", "yes")
    assert (group, entry) == ("ALL", "ALL")


def test_no_ptr_is_unknown(srv, stub):
    icid, name, verified, action, group, entry = session(srv, "127.0.0.5", banner("ESMTP"))
    assert (name, verified) == ("unknown", "no")
    assert (group, entry) == ("ALL", "ALL")
    assert stub.count(reverse("127.0.0.5"), "PTR") >= 1


def test_dropped_query_client_unknown_and_served(srv, stub):
    """The PTR query is never answered: at the timeout the client is 'unknown' and
    served; meanwhile another client is served as usual (no stall of the loop)."""
    mark = srv.log_mark()
    slow = connect_from(srv, "127.0.0.7")
    # while 127.0.0.7 waits on DNS, 127.0.0.2 gets a whole session through
    session(srv, "127.0.0.2", banner("named"))
    r = slow.reply(timeout=30)
    assert r.raw == banner("ESMTP"), r
    slow.ehlo()
    mid = slow.send_message()
    slow.quit()
    assert mid in srv.queue_mids()
    icid, name, verified, action, group, entry = identified(srv, mark, "127.0.0.7")
    assert (name, verified) == ("unknown", "no")
    assert (group, entry) == ("ALL", "ALL")
    assert stub.count(reverse("127.0.0.7"), "PTR") >= 1
    # and the resolver still works for the next client after a dropped query
    icid, name, verified, action, group, entry = session(srv, "127.0.0.15", banner("suffix"))
    assert (name, verified, group) == ("late.trusted.example", "yes", "SUFFIX")


def test_hosts_file_answers_first(srv, stub):
    """hosts_file is consulted before any query: the name and its check come from it."""
    before = stub.count()
    icid, name, verified, action, group, entry = session(srv, "127.0.0.9", banner("suffix"))
    assert (name, verified, group) == ("fromfile.trusted.example", "yes", "SUFFIX")
    assert stub.count(reverse("127.0.0.9")) == 0 and stub.count("fromfile.trusted.example") == 0
    assert stub.count() == before


def test_every_query_was_ours(srv, stub):
    session(srv, "127.0.0.3", banner("suffix"))
    with stub._lock:
        seen = list(stub.queries)
    assert seen, "the stub saw no query at all"
    strangers = [(n, t) for n, t in seen if n not in OUR_NAMES]
    assert not strangers, "queries for names that are not ours: %s" % strangers
    assert {t for _, t in seen} <= {"PTR", "A"}, "unexpected query types: %s" % seen


def test_reverse_lookups_off_sends_nothing(mailgate, stub, tmp_path):
    """dns.reverse_lookups = false: every client is unknown, no query is sent, and
    a hostname entry cannot match even a client whose PTR would verify."""
    hosts = tmp_path / "hosts"
    hosts.write_text("")
    s = mailgate(hat=HAT, policies=POLICIES, top={"dns": {
        "resolvers": [stub.resolver], "reverse_lookups": False,
        "hosts_file": str(hosts), "timeout": DNS_TIMEOUT}})
    before = stub.count()
    icid, name, verified, action, group, entry = session(s, "127.0.0.2", banner("ESMTP"))
    assert (name, verified, group) == ("unknown", "no", "ALL")
    assert stub.count() == before, "a query was sent with reverse_lookups off"


def test_flood_during_lookups_no_descriptor_leak(mailgate, tmp_path):
    """Clients that leave while their PTR query is unanswered, and a flood from one
    host whose lookup never answers past max_connections_per_host: every
    descriptor comes back, and the server still resolves and serves."""
    records = dict(RECORDS)
    leavers = ["127.0.5.%d" % i for i in range(1, 31)]
    for a in leavers + ["127.0.5.100"]:
        records[reverse(a)] = "DROP"
    hosts = tmp_path / "hosts"
    hosts.write_text("")
    with DnsStub(records) as stub:
        s = mailgate(hat=HAT, policies=POLICIES, policy={"max_connections_per_host": 2},
                     top={"dns": {"resolvers": [stub.resolver], "reverse_lookups": True,
                                  "hosts_file": str(hosts), "timeout": DNS_TIMEOUT}})
        session(s, "127.0.0.2", banner("named"))
        pid = s.proc.pid
        before = settled_fds(s, s.queue_mids())
        # 20 from one host whose lookup never answers: all wait for it, then at the
        # timeout 2 are admitted and 18 refused
        held = [connect_from(s, "127.0.5.100") for _ in range(20)]
        # 30 that leave while their own lookup is pending
        for a in leavers:
            connect_from(s, a).close()
        replies = [c.reply(timeout=30).raw for c in held]
        assert replies.count(banner("ESMTP")) == 2, replies
        assert replies.count(b"421 #4.4.5 Too many connections from your host\r\n") == 18, \
            replies
        for c in held:
            c.close()
        # libunbound goes on retrying the abandoned queries after dns.timeout (about
        # 30 s here), each outstanding one on a UDP socket of its own: wait for those
        # to end too, then nothing may be left over
        poll_until(lambda: len(fd_list(pid)) == len(before), 80, 0.2,
                   "the descriptors to come back to %d" % len(before))
        session(s, "127.0.0.3", banner("suffix"))
        names = {n.lower().rstrip(".") for n in records}
        assert {n for n, _ in stub.queries} <= names, stub.queries


def test_client_leaving_during_lookup_is_not_logged_as_icid_0(mailgate, tmp_path):
    """A client that leaves before its reverse lookup ends: whatever the server logs
    about it must not borrow ICID 0 (the mark of a TCPREFUSE connection); every
    'ICID n close' line belongs to a connection announced by 'New SMTP ICID n'."""
    hosts = tmp_path / "hosts"
    hosts.write_text("")
    with DnsStub({reverse("127.0.6.1"): "DROP"}) as stub:
        s = mailgate(top={"dns": {"resolvers": [stub.resolver], "reverse_lookups": True,
                                  "hosts_file": str(hosts), "timeout": "10s"}})
        c = connect_from(s, "127.0.6.1")
        # the server is waiting on the PTR query: the client leaves
        poll_until(lambda: stub.count(reverse("127.0.6.1"), "PTR"), 10, what="the PTR query")
        c.close()

        def sessions():
            r = s.cli("status", "--json")
            assert r.returncode == 0, r
            return json.loads(r.stdout)["sessions"] == 0
        poll_until(sessions, 10, 0.1, "the session to be gone")
    text = s.log_text()
    opened = set(re.findall(r"New SMTP ICID (\d+) ", text))
    closed = re.findall(r"Info: ICID (\d+) close$", text, re.M)
    assert "0" not in closed, "a connection that was never refused with TCPREFUSE was " \
        "logged as 'ICID 0 close':\n%s" % text
    assert set(closed) <= opened, "close lines without a 'New SMTP ICID' line:\n%s" % text


def test_dead_reverse_zone_flood_does_not_starve_other_lookups(mailgate, tmp_path):
    """120 clients whose PTR queries are never answered, each gone at once: a
    client whose own PTR and A answer at once must still be identified within
    dns.timeout and match its .suffix entry, not fall to ALL (here: a reject)."""
    dead = ["127.0.7.%d" % i for i in range(1, 121)]
    records = {reverse(a): "DROP" for a in dead}
    records[reverse("127.0.0.16")] = {"PTR": ["fresh.trusted.example"]}
    records["fresh.trusted.example"] = {"A": ["127.0.0.16"]}
    hosts = tmp_path / "hosts"
    hosts.write_text("")
    with DnsStub(records) as stub:
        s = mailgate(hat=[{"group": "SUFFIX", "hosts": [".trusted.example"],
                           "policy": "SUFFIXPOL"},
                          {"group": "ALL", "hosts": ["ALL"], "policy": "BLOCKED"}],
                     policies={"SUFFIXPOL": POLICIES["SUFFIXPOL"],
                               "BLOCKED": {"action": "reject"}},
                     top={"dns": {"resolvers": [stub.resolver], "reverse_lookups": True,
                                  "hosts_file": str(hosts), "timeout": DNS_TIMEOUT}})
        for a in dead:
            connect_from(s, a).close()
        # the resolver is busy with the dead queries
        poll_until(lambda: stub.count(rtype="PTR") >= 16, 10, what="the dead PTR queries")
        mark = s.log_mark()
        c = connect_from(s, "127.0.0.16")
        r = c.reply()
        asked = stub.count(reverse("127.0.0.16"), "PTR")
        assert r.raw == banner("suffix"), (
            "a client with a working reverse zone was not identified while dead queries "
            "held the resolver (its PTR query was %s): got %r; log:\n%s" % (
                "sent" if asked else "never sent", r.raw, s.log_since(mark)))
        c.ehlo()
        c.quit()
