"""A tiny authoritative-looking DNS server on 127.0.0.1 for the tests (stdlib only).

DnsStub(records) answers UDP queries from a table and records every question it
sees, so a test can point `dns.resolvers` at it and also check that no query was
sent. It never sends a packet anywhere but back to the client on 127.0.0.1.

records maps a name (case-insensitive, trailing dot optional) to a dict of type ->
list of values, or to one of the strings "SERVFAIL", "REFUSED" (that rcode) or
"DROP" (never answer):
    "A": ["192.0.2.1"], "AAAA": ["2001:db8::1"], "PTR": ["mail.example.com"],
    "MX": [(10, "mx1.example.com"), (0, ".")], "CNAME": ["other.example.com"]
A name not in the table is NXDOMAIN; a name without the asked type is NODATA.
DnsStub.reverse("192.0.2.1") gives "1.2.0.192.in-addr.arpa" (ip6.arpa for IPv6).
"""

import ipaddress
import socket
import struct
import threading

TYPES = {"A": 1, "CNAME": 5, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28, "OPT": 41}
TYPE_NAMES = {v: k for k, v in TYPES.items()}
RCODES = {"NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "REFUSED": 5}
CLASS_IN = 1
TTL = 60


def norm(name):
    return name.lower().rstrip(".")


def encode_name(name):
    """An uncompressed wire-format name (RFC 1035 3.1); "." or "" is the root."""
    out = b""
    name = name.rstrip(".")
    for label in name.split(".") if name else []:
        raw = label.encode("ascii")
        if not 0 < len(raw) < 64:
            raise ValueError("bad label in %r" % name)
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def decode_name(pkt, off):
    """Read a (possibly compressed) name; returns (text without the final dot, next offset)."""
    labels = []
    end = None
    hops = 0
    while True:
        if off >= len(pkt):
            raise ValueError("name runs past the packet")
        n = pkt[off]
        if n & 0xC0 == 0xC0:
            if off + 1 >= len(pkt) or hops > 32:
                raise ValueError("bad compression pointer")
            if end is None:
                end = off + 2
            off = ((n & 0x3F) << 8) | pkt[off + 1]
            hops += 1
            continue
        if n & 0xC0:
            raise ValueError("unknown label type")
        off += 1
        if n == 0:
            break
        labels.append(pkt[off:off + n].decode("ascii", "replace"))
        off += n
    return ".".join(labels), (end if end is not None else off)


def rdata(rtype, value):
    if rtype == "A":
        return socket.inet_pton(socket.AF_INET, value)
    if rtype == "AAAA":
        return socket.inet_pton(socket.AF_INET6, value)
    if rtype in ("PTR", "CNAME"):
        return encode_name(value)
    if rtype == "MX":
        pref, host = value
        return struct.pack("!H", pref) + encode_name(host)
    if rtype == "TXT":
        raw = value.encode()
        return bytes([len(raw)]) + raw
    raise ValueError("unsupported type %r" % rtype)


def reverse(addr):
    """The PTR owner name of an address (RFC 1035 3.5, RFC 3596 2.5)."""
    return ipaddress.ip_address(addr).reverse_pointer


def build_query(name, rtype, qid=0x1234, edns=False):
    """A raw query packet (used by the self-test, handy for others)."""
    hdr = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 1 if edns else 0)
    q = encode_name(name) + struct.pack("!HH", TYPES[rtype], CLASS_IN)
    opt = b"\0" + struct.pack("!HHIH", TYPES["OPT"], 1232, 0, 0) if edns else b""
    return hdr + q + opt


def parse_response(pkt):
    """(rcode, [(name, type name, value)]) of a response, for tests."""
    qid, flags, qd, an, _ns, _ar = struct.unpack("!HHHHHH", pkt[:12])
    off = 12
    for _ in range(qd):
        _, off = decode_name(pkt, off)
        off += 4
    answers = []
    for _ in range(an):
        name, off = decode_name(pkt, off)
        rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", pkt[off:off + 10])
        off += 10
        rd = pkt[off:off + rdlen]
        tname = TYPE_NAMES.get(rtype, str(rtype))
        if tname == "A":
            value = socket.inet_ntop(socket.AF_INET, rd)
        elif tname == "AAAA":
            value = socket.inet_ntop(socket.AF_INET6, rd)
        elif tname in ("PTR", "CNAME"):
            value = decode_name(pkt, off)[0]
        elif tname == "MX":
            value = (struct.unpack("!H", rd[:2])[0], decode_name(pkt, off + 2)[0])
        else:
            value = rd
        answers.append((name, tname, value))
        off += rdlen
    return flags & 0xF, answers


class DnsStub:
    def __init__(self, records=None, host="127.0.0.1"):
        assert host in ("127.0.0.1", "::1"), "the stub only ever listens on loopback"
        self.host = host
        self._lock = threading.Lock()
        self.records = {}
        for name, v in (records or {}).items():
            self.add(name, v)
        self.queries = []            # (name, type name) in arrival order
        self.port = None
        self._sock = None
        self._thread = None
        self._stop = threading.Event()

    def add(self, name, value):
        """Add or replace the entry of one name (same forms as in the constructor)."""
        with self._lock:
            self.records[norm(name)] = value

    def start(self):
        fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._sock = socket.socket(fam, socket.SOCK_DGRAM)
        self._sock.bind((self.host, 0))
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="dnsstub", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def resolver(self):
        """The dns.resolvers entry for this stub: "127.0.0.1:PORT" or "[::1]:PORT"."""
        return ("[%s]:%d" if ":" in self.host else "%s:%d") % (self.host, self.port)

    def count(self, name=None, rtype=None):
        with self._lock:
            return sum(1 for n, t in self.queries
                       if (name is None or n == norm(name)) and (rtype is None or t == rtype))

    def _run(self):
        while not self._stop.is_set():
            try:
                pkt, peer = self._sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                break
            try:
                reply = self._answer(pkt)
            except (ValueError, IndexError, struct.error):
                reply = None
            if reply is not None:
                try:
                    self._sock.sendto(reply, peer)
                except OSError:
                    pass

    def _answer(self, pkt):
        qid, flags, qdcount, _an, _ns, arcount = struct.unpack("!HHHHHH", pkt[:12])
        if flags & 0x8000 or qdcount != 1:
            return None
        qname, off = decode_name(pkt, 12)
        qtype, qclass = struct.unpack("!HH", pkt[off:off + 4])
        question = pkt[12:off + 4]          # echoed as received (keeps any 0x20 casing)
        tname = TYPE_NAMES.get(qtype, str(qtype))
        with self._lock:
            self.queries.append((norm(qname), tname))
            entry = self.records.get(norm(qname))
        rcode = RCODES["NOERROR"]
        answers = []
        if entry == "DROP":
            return None
        if isinstance(entry, str):
            rcode = RCODES[entry]
        elif entry is None or qclass != CLASS_IN:
            rcode = RCODES["NXDOMAIN"] if entry is None else RCODES["REFUSED"]
        else:
            owner = None                    # None: the question name
            for _ in range(8):              # follow a short CNAME chain (RFC 1034 3.6.2)
                if tname == "CNAME" or "CNAME" not in entry:
                    break
                target = entry["CNAME"][0]
                answers.append((owner, "CNAME", target))
                owner = norm(target)
                with self._lock:
                    entry = self.records.get(owner)
                if not isinstance(entry, dict):
                    entry = {}
                    break
            for value in entry.get(tname, []):
                answers.append((owner, tname, value))
        # QR, opcode copied, AA, RD copied, RA (RFC 1035 4.1.1)
        rflags = 0x8000 | (flags & 0x7800) | 0x0400 | (flags & 0x0100) | 0x0080 | rcode
        out = struct.pack("!HHHHHH", qid, rflags, 1, len(answers), 0, 1 if arcount else 0)
        out += question
        for owner, rtype, value in answers:
            rd = rdata(rtype, value)
            # the question name as a pointer to offset 12 (RFC 1035 4.1.4)
            out += struct.pack("!H", 0xC00C) if owner is None else encode_name(owner)
            out += struct.pack("!HHIH", TYPES[rtype], CLASS_IN, TTL, len(rd)) + rd
        if arcount:
            # the query had an OPT record (EDNS0, RFC 6891): answer with one too
            out += b"\0" + struct.pack("!HHIH", TYPES["OPT"], 1232, 0, 0)
        return out
