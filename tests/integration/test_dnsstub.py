"""The DNS stub the HAT tests point mailgate at: it must answer like a server
(raw packets in, raw packets out), say NXDOMAIN and NODATA apart, follow CNAMEs,
echo EDNS, stay silent when told to, and record every question it saw."""

import socket
import struct

import pytest

from dnsstub import DnsStub, build_query, parse_response, reverse

RECORDS = {
    reverse("192.0.2.10"): {"PTR": ["mail.test.example"]},
    "Mail.Test.Example.": {"A": ["192.0.2.10"], "AAAA": ["2001:db8::10"]},
    "alias.test.example": {"CNAME": ["mail.test.example"]},
    "mx.test.example": {"MX": [(20, "b.test.example"), (10, "a.test.example")]},
    "null.test.example": {"MX": [(0, ".")]},
    "broken.test.example": "SERVFAIL",
    "silent.test.example": "DROP",
}


@pytest.fixture
def stub():
    with DnsStub(RECORDS) as s:
        yield s


def ask(stub, name, rtype, qid=0x4242, edns=False, timeout=2.0):
    """One raw UDP query; (rcode, answers, raw reply), or None when nothing came."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(build_query(name, rtype, qid, edns), ("127.0.0.1", stub.port))
        try:
            raw, peer = s.recvfrom(4096)
        except socket.timeout:
            return None
    assert peer == ("127.0.0.1", stub.port)
    assert struct.unpack("!H", raw[:2])[0] == qid
    assert raw[2] & 0x80, "QR must be set in an answer"
    rcode, answers = parse_response(raw)
    return rcode, answers, raw


def test_answers_from_the_table(stub):
    assert stub.port and stub.resolver == "127.0.0.1:%d" % stub.port
    rcode, answers, _ = ask(stub, reverse("192.0.2.10"), "PTR")
    assert rcode == 0
    assert answers == [("10.2.0.192.in-addr.arpa", "PTR", "mail.test.example")]
    # names match whatever the case and the trailing dot
    rcode, answers, _ = ask(stub, "MAIL.test.example", "A")
    assert (rcode, answers) == (0, [("MAIL.test.example", "A", "192.0.2.10")])
    rcode, answers, _ = ask(stub, "mail.test.example", "AAAA")
    assert answers == [("mail.test.example", "AAAA", "2001:db8::10")]
    rcode, answers, _ = ask(stub, "mx.test.example", "MX")
    assert [a[2] for a in answers] == [(20, "b.test.example"), (10, "a.test.example")]
    rcode, answers, _ = ask(stub, "null.test.example", "MX")
    assert answers == [("null.test.example", "MX", (0, ""))]


def test_nxdomain_nodata_servfail(stub):
    assert ask(stub, "nowhere.test.example", "A")[:2] == (3, [])
    assert ask(stub, "mail.test.example", "MX")[:2] == (0, [])      # NODATA
    assert ask(stub, "broken.test.example", "A")[:2] == (2, [])


def test_cname_is_followed(stub):
    rcode, answers, _ = ask(stub, "alias.test.example", "A")
    assert rcode == 0
    assert answers == [("alias.test.example", "CNAME", "mail.test.example"),
                       ("mail.test.example", "A", "192.0.2.10")]


def test_edns_is_echoed(stub):
    _, _, raw = ask(stub, "mail.test.example", "A", edns=True)
    assert struct.unpack("!H", raw[10:12])[0] == 1, "an OPT record in the additional section"
    _, _, raw = ask(stub, "mail.test.example", "A")
    assert struct.unpack("!H", raw[10:12])[0] == 0


def test_drop_and_query_log(stub):
    assert ask(stub, "silent.test.example", "A", timeout=0.5) is None
    ask(stub, "mail.test.example", "A")
    assert stub.queries == [("silent.test.example", "A"), ("mail.test.example", "A")]
    assert stub.count("mail.test.example") == 1
    assert stub.count(rtype="PTR") == 0


def test_records_can_change_and_garbage_is_ignored(stub):
    stub.add("late.test.example", {"A": ["192.0.2.99"]})
    assert ask(stub, "late.test.example", "A")[1][0][2] == "192.0.2.99"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.3)
        s.sendto(b"\x00\x01garbage", ("127.0.0.1", stub.port))
        with pytest.raises(socket.timeout):
            s.recvfrom(4096)
    # still serving after the garbage
    assert ask(stub, "mail.test.example", "A")[0] == 0


def test_reverse_names():
    assert reverse("192.0.2.10") == "10.2.0.192.in-addr.arpa"
    assert reverse("2001:db8::1") == ("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0."
                                      "8.b.d.0.1.0.0.2.ip6.arpa")


def test_ipv6_loopback():
    try:
        stub = DnsStub(RECORDS, host="::1").start()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        assert stub.resolver == "[::1]:%d" % stub.port
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.sendto(build_query("mail.test.example", "A"), ("::1", stub.port))
            rcode, answers = parse_response(s.recvfrom(4096)[0])
        assert (rcode, answers[0][2]) == (0, "192.0.2.10")
    finally:
        stub.stop()


def test_only_loopback():
    with pytest.raises(AssertionError):
        DnsStub({}, host="0.0.0.0")
