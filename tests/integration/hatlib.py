"""Helpers of the issue-3 tests (HAT, policies, RAT, connection limits, suspend):
clients from any 127/8 address, a second listener, descriptor counts, and
waiting for the server's own log lines instead of sleeping."""

import os
import re
import select
import socket
import time

from conftest import HOST, HOSTNAME, free_port, poll_until
from smtpclient import Client, DEFAULT_TIMEOUT

SERVICE_UNAVAILABLE = "%s Service not available, closing transaction channel" % HOSTNAME


class SrcClient(Client):
    """smtpclient.Client whose socket is bound to a source address first
    (the whole of 127/8 is loopback, so 127.0.0.2 is "another host")."""

    def __init__(self, host, port, source, timeout=DEFAULT_TIMEOUT, nodelay=True):
        self.host, self.port = host, port
        self.source = source
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0))
        if nodelay:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.closed_by_peer = False
        self.icid = None
        self.transcript = []
        self._bg = None


def connect_from(srv, source="127.0.0.1", port=None, timeout=None):
    """A raw connection (nothing read yet) from `source` to the server's first
    listener, or to `port`; closed with the server at teardown."""
    c = SrcClient(HOST, port or srv.port, source, timeout or 15.0)
    srv.clients.append(c)
    return c


def new_icids(srv, mark, source):
    """The ICIDs of the 'New SMTP ICID' lines for `source` since mark."""
    return [int(i) for i in re.findall(
        r"New SMTP ICID (\d+) interface \S+ \(\S+\) address %s " % re.escape(source),
        srv.log_since(mark))]


def open_session(srv, source="127.0.0.1", port=None,
                 banner=("220 %s ESMTP\r\n" % HOSTNAME).encode()):
    """A client from `source` that got its banner; c.icid is its ICID (from the log)."""
    mark = srv.log_mark()
    c = connect_from(srv, source, port)
    r = c.reply()
    assert r.raw == banner, "a client from %s was not served: %r" % (source, r.raw)
    ids = poll_until(lambda: new_icids(srv, mark, source), 5, what="the New SMTP ICID line")
    assert len(ids) == 1, ids
    c.icid = ids[0]
    return c


def quit_and_wait(srv, c):
    """QUIT, and wait for the server to log the close (its slot is free again)."""
    c.quit()
    srv.wait_log(r"Info: ICID %d close$" % c.icid)


def served_from(srv, source="127.0.0.1", port=None, banner=None, rcpt="rcpt@test.example"):
    """A client from `source` gets the banner, EHLO and a whole message through
    (the 'still served' check after a refusal). Returns the MID."""
    c = connect_from(srv, source, port)
    r = c.reply()
    assert r.code == 220, "a client from %s was not served: %r" % (source, r.raw)
    if banner is not None:
        assert r.raw == banner, r
    c.ehlo()
    mid = c.send_message(rcpts=(rcpt,))
    c.quit()
    assert mid in srv.queue_mids(), "MID %s acknowledged but not in the queue" % mid
    return mid


def refused_421(srv, source, text, port=None, mark=None):
    """A new connection from `source` gets exactly `421 <text>` as its first reply,
    then the connection closes; the refusal is logged."""
    mark = srv.log_mark() if mark is None else mark
    c = connect_from(srv, source, port)
    r = c.reply()
    assert r.raw == ("421 %s\r\n" % text).encode(), \
        "expected '421 %s' from %s, got %r" % (text, source, r.raw)
    c.expect_closed()
    srv.assert_log(r"Info: ICID \d+ Receiving Failed: \S.*$", mark)
    return c


def add_listener(srv, name, port=None, **overrides):
    """A second listener (before start): same HAT, RAT and type as the first,
    its own port. Returns its port."""
    port = port or free_port()
    first = srv.settings["listeners"][0]
    lst = {k: v for k, v in first.items()}
    lst["name"] = name
    lst["listen"] = ["%s:%d" % (HOST, port)]
    lst.update(overrides)
    srv.settings["listeners"].append(lst)
    srv.write_config()
    return port


def fd_list(pid):
    out = {}
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            out[int(fd)] = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            pass
    return out


def wait_closes(srv, mark, n, timeout=60):
    """Every one of the n connections opened since mark logged 'ICID <n> close'
    (a tcprefused one closes as ICID 0)."""
    def done():
        text = srv.log_since(mark)
        opened = re.findall(r"New SMTP ICID (\d+) ", text)
        closed = re.findall(r"Info: ICID (\d+) close$", text, re.M)
        return len(opened) >= n and sorted(closed) == sorted(opened)
    poll_until(done, timeout, 0.1, "%d connections to be logged as closed" % n)


def noop_until_421(c, timeout=30):
    """Wait on the socket, sending a NOOP between waits, until a 421 arrives,
    whether it answers a NOOP or comes unasked (a session told at its next
    command, or at once when the grace ends). Every other answer must be 250 ok."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([c.sock], [], [], 0.25)
        if r:
            rep = c.reply()
            assert rep.code == 421, "unexpected unasked reply %r" % rep.raw
            return rep
        try:
            c.line("NOOP")
        except OSError:
            return c.reply()            # closed under us: the 421 must be in the buffer
        rep = c.reply()
        if rep.code == 421:
            return rep
        assert rep.raw == b"250 ok\r\n", rep.raw
    raise AssertionError("no 421 within %ss" % timeout)


def settled_fds(srv, mids, timeout=30):
    """The descriptor list once the scheduler has tried every message in mids (its
    first attempt at the test configs' dead SMTP route ends deferred, recorded in
    the state file) and nothing is opening or closing: a snapshot taken before a
    delivery attempt finishes would count its socket or state file."""
    import json

    def tried():
        r = srv.cli("queue", "list", "--json")
        if r.returncode != 0:
            return False
        states = {}
        for line in r.stdout.decode().splitlines():
            e = json.loads(line)
            states[e["mid"]] = [x["state"] for x in e["recipients"]]
        return all(m in states and all(s != "queued" for s in states[m]) for m in mids)
    poll_until(tried, timeout, 0.1, "the first delivery attempt of MIDs %s" % (mids,))
    last = []

    def stable():
        now = fd_list(srv.proc.pid)
        same = now == last[-1] if last else False
        last.append(now)
        return same and len(last) >= 3
    poll_until(stable, timeout, 0.2, "the descriptors to settle")
    return last[-1]
