"""USEDNS end to end (issue 6): MX lookups through the stub DNS server of
dnsstub.py on 127.0.0.1 (`dns.resolvers`, an empty hosts file), MX hosts at
127.0.0.2 and 127.0.0.3 where two sinks listen on the same port, which the test
build's MAILGATE_TEST_MX_PORT hook makes the port USEDNS connects to (no test
can bind port 25). MX preference order, the next MX when one cannot be reached,
the A record of a domain without MX (RFC 5321 5.1), a null MX (RFC 7505) that
bounces at once without a connection, and a SERVFAIL or no answer at all that
defers. Every query
the stub saw is one of ours; it is the only resolver in the config."""

import re
import socket

import pytest

from conftest import poll_until
from dnsstub import DnsStub
from smtpsink import SmtpSink
from test_delivery_local import gone, states

WAIT = 30
MX_A, MX_B, NOBODY = "127.0.0.2", "127.0.0.3", "127.0.0.4"

RECORDS = {
    # listed in the "wrong" order: preference decides, not the answer's order
    "pref.example": {"MX": [(20, "mx-b.pref.example"), (10, "mx-a.pref.example")]},
    "mx-a.pref.example": {"A": [MX_A]},
    "mx-b.pref.example": {"A": [MX_B]},
    # the best MX has nobody listening: the next one gets it
    "down.example": {"MX": [(5, "mx-down.down.example"), (50, "mx-b.pref.example")]},
    "mx-down.down.example": {"A": [NOBODY]},
    # no MX, an A record: the domain is its own MX
    "aonly.example": {"A": [MX_B]},
    # RFC 7505: "MX 0 ." accepts no mail
    "nullmx.example": {"MX": [(0, ".")], "A": [MX_A]},
    "servfail.example": "SERVFAIL",
    # the server never answers: dns.timeout, then a deferral
    "silent.example": "DROP",
    # where the DSNs go (the senders' domain)
    "back.example": {"MX": [(10, "mx-a.pref.example")]},
}
OURS = {n.lower() for n in RECORDS}


def sink_pair():
    """Two sinks on MX_A and MX_B, the same port for both."""
    for _ in range(20):
        a = SmtpSink(host=MX_A)
        try:
            b = SmtpSink(host=MX_B, port=a.port)
        except OSError:
            a.stop()
            continue
        # and nobody on NOBODY at that port
        probe = socket.socket()
        try:
            if probe.connect_ex((NOBODY, a.port)) == 0:
                a.stop()
                b.stop()
                continue
        finally:
            probe.close()
        return a.start(), b.start()
    raise AssertionError("no port free on both %s and %s" % (MX_A, MX_B))


@pytest.fixture(scope="module")
def net(mailgate_module, tmp_path_factory):
    stub = DnsStub(RECORDS).start()
    a, b = sink_pair()
    hosts = tmp_path_factory.mktemp("dns") / "hosts"
    hosts.write_text("")
    srv = mailgate_module(
        top={"dns": {"resolvers": [stub.resolver], "hosts_file": str(hosts), "timeout": "2s"},
             "routes": [{"domain": "ALL", "to": ["USEDNS"]}],
             "delivery": {"retry_initial": "1h", "retry_max": "1h"}},
        env={"MAILGATE_TEST_MX_PORT": str(a.port)})
    yield srv, stub, a, b
    srv.stop()
    a.stop()
    b.stop()
    stub.stop()


def send(s, rcpts, sender="sender@back.example"):
    c = s.connect()
    c.ehlo()
    mid = c.send_message(sender=sender, rcpts=rcpts)
    c.quit()
    return mid


def to(sink, rcpt):
    return [m for m in sink.messages if rcpt in m.rcpts]


def test_mx_preference_order(net):
    s, stub, a, b = net
    mark = s.log_mark()
    mid = send(s, ["user@pref.example"])
    a.wait(lambda: to(a, "user@pref.example"), WAIT, "the message at the preference 10 MX")
    poll_until(lambda: gone(s, mid), WAIT, what="MID %d to leave the queue" % mid)
    assert to(b, "user@pref.example") == []
    log = s.log_since(mark)
    assert re.search(r"Info: New SMTP DCID \d+ interface \S+ address %s port %d$"
                     % (re.escape(MX_A), a.port), log, re.M), log
    assert stub.count("pref.example", "MX") >= 1


def test_next_mx_when_the_best_cannot_be_reached(net):
    s, stub, a, b = net
    mark = s.log_mark()
    mid = send(s, ["user@down.example"])
    b.wait(lambda: to(b, "user@down.example"), WAIT, "the message at the second MX")
    poll_until(lambda: gone(s, mid), WAIT, what="MID %d to leave the queue" % mid)
    # the best MX was considered: its address was looked up
    assert stub.count("mx-down.down.example", "A") >= 1
    log = s.log_since(mark)
    assert "Delayed:" not in log and "Bounced:" not in log, log


def test_a_record_when_there_is_no_mx(net):
    s, stub, a, b = net
    mid = send(s, ["user@aonly.example"])
    b.wait(lambda: to(b, "user@aonly.example"), WAIT, "the message at the domain's address")
    poll_until(lambda: gone(s, mid), WAIT, what="MID %d to leave the queue" % mid)
    assert stub.count("aonly.example", "MX") >= 1 and stub.count("aonly.example", "A") >= 1


def test_null_mx_bounces_at_once(net):
    s, stub, a, b = net
    mark = s.log_mark()
    conns = a.connections + b.connections
    mid = send(s, ["user@nullmx.example"], sender="nm@back.example")
    s.wait_log(r"Info: Bounced: DCID 0 MID %d to RID \[0\] - 5\.1\.10 - Unknown address "
               r"error \('556', \['Recipient address has null MX: nullmx\.example accepts "
               r"no mail'\]\)$" % mid, mark, timeout=WAIT)
    m = s.wait_log(r"Info: MID (\d+) was generated for bounce of MID %d$" % mid, mark)
    dsn = int(m.group(1))
    a.wait(lambda: to(a, "nm@back.example"), WAIT, "the DSN at back.example's MX")
    poll_until(lambda: gone(s, mid) and gone(s, dsn), WAIT, what="both to leave the queue")
    # one attempt, no retry, and nobody was connected to for nullmx.example
    assert len(re.findall(r"Delivery start DCID \d+ MID %d " % mid, s.log_since(mark))) == 0
    assert a.connections + b.connections - conns <= 1        # the DSN's only
    assert stub.count("nullmx.example", "A") == 0
    report = to(a, "nm@back.example")[0].data
    assert b"Status: 5.1.10" in report and b"nullmx.example" in report, report


def test_servfail_defers(net):
    s, stub, a, b = net
    mark = s.log_mark()
    mid = send(s, ["user@servfail.example"])
    s.wait_log(r"Info: Delayed: DCID 0 MID %d to RID \[0\] - 4\.4\.3 - Other network problem "
               r"\('000', \['temporary DNS failure looking up the MX of servfail\.example'\]\)$"
               % mid, mark, timeout=WAIT)
    poll_until(lambda: states(s, mid) == ["deferred"], WAIT, what="the recipient deferred")
    assert mid in s.queue_mids()
    assert "Bounced:" not in s.log_since(mark)


def test_unanswered_query_defers(net):
    s, stub, a, b = net
    mark = s.log_mark()
    mid = send(s, ["user@silent.example"])
    s.wait_log(r"Info: Delayed: DCID 0 MID %d to RID \[0\] - 4\.4\.3 - Other network problem "
               r"\('000', \['temporary DNS failure looking up the MX of silent\.example'\]\)$"
               % mid, mark, timeout=WAIT)
    poll_until(lambda: states(s, mid) == ["deferred"], WAIT, what="the recipient deferred")
    assert stub.count("silent.example", "MX") >= 1


def test_only_the_stub_was_asked(net):
    """Runs last in the module: the stub, the only resolver configured, saw
    queries, each about one of our names (no stray lookup, e.g. of a root)."""
    s, stub, a, b = net
    with stub._lock:
        names = {n for n, _ in stub.queries}
    assert names and names <= OURS, names - OURS
