"""What every hostile-input module (test_hostile_NN_*.py, one per class of
spec/hostile.md) shares: the three ways of sending bytes, the seeds, and the
check each class ends with.

Where bytes matter each case is sent three ways: one write, one byte per write,
and random splits from random.Random(seed); the seed is printed (and shown by
pytest when the test fails). Set MAILGATE_TEST_SEED to replay another base seed.

A class's servers are started with hostile_server(), which records what the
server holds once it has served one whole transaction (its descriptors and its
heap in use, from `mailgate status`). The class's last test calls
assert_left_clean(): the server still answers a new connection, and once the
queue is emptied it holds no more descriptors than before and no more heap than
before plus HEAP_SLACK (allocator and library caches that settle, never a
per-connection or per-message cost: every class runs hundreds of them).
"""

import json
import os
import re
import zlib

from conftest import poll_until
from hatlib import fd_list

WAYS = ["one", "bytes", "random"]
BASE_SEED = int(os.environ.get("MAILGATE_TEST_SEED", "20261128"))
ACCEPTED = re.compile(r"ok: Message \d+ accepted")
HEAP_SLACK = 32 * 1024


def seed_for(*parts):
    s = BASE_SEED + zlib.crc32(repr(parts).encode())
    print("random split seed: %d (MAILGATE_TEST_SEED=%d, case %r)" % (s, BASE_SEED, parts))
    return s


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


def status(s):
    r = s.cli("status", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def empty_queue(s):
    """Delete every queued message and wait until the server holds none."""
    mids = s.queue_mids()
    if mids:
        r = s.cli("queue", "delete", *[str(m) for m in mids])
        assert r.returncode == 0, r.stderr
    poll_until(lambda: status(s)["queue"]["messages"] == 0 and not s.queue_mids(), 60, 0.1,
               "the queue to empty")


def settle(s):
    """The descriptor list once nothing is opening or closing."""
    last = []

    def stable():
        last.append(fd_list(s.proc.pid))
        return len(last) >= 5 and all(x == last[-1] for x in last[-5:])
    poll_until(stable, 60, 0.1, "the descriptors to settle")
    return last[-1]


def settle_to(s, want):
    """The descriptor list once it is want again (sessions the class closed may
    still be closing: a failed AUTH is answered after a delay), or after 60 s."""
    last = []

    def back():
        last.append(fd_list(s.proc.pid))
        return last[-1] == want
    try:
        poll_until(back, 60, 0.1, "the descriptors of before the class")
    except AssertionError:
        pass
    return last[-1]


def snapshot(s):
    """(descriptors, heap bytes) of an idle server with an empty queue."""
    empty_queue(s)
    fds = settle(s)
    return fds, status(s)["memory"]["heap"]


def hostile_server(factory, **kw):
    s = factory(**kw)
    s.assert_serving()          # the first transaction warms what is allocated once
    s.hostile_base = snapshot(s)
    return s


def assert_left_clean(*servers):
    for s in servers:
        s.assert_serving()
        assert_log_well_formed(s)
        fds0, heap0 = s.hostile_base
        empty_queue(s)
        fds = settle_to(s, fds0)
        assert fds == fds0, "descriptors before the class %s, after %s" % (fds0, fds)
        heap = status(s)["memory"]["heap"]
        print("heap in use: %d octets before the class, %d after" % (heap0, heap))
        assert heap <= heap0 + HEAP_SLACK, \
            "heap in use grew from %d to %d octets over the class" % (heap0, heap)
