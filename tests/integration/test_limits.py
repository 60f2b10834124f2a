"""Issue 3: the limits of a mail flow policy, a listener and the server, each
counted across listeners (two listeners where it matters), each reply exact, a
421 followed by the close, and another client (127.0.0.2, 127.0.0.3...) still
served. A flood past every limit leaks no descriptor."""

import re

from conftest import HOSTNAME, poll_until
from hatlib import (add_listener, connect_from, open_session, quit_and_wait,
                    refused_421, served_from, settled_fds, wait_closes)

FROM_HOST = "#4.4.5 Too many connections from your host"
TO_HOST = "#4.4.5 Too many connections to this host"
TO_LISTENER = "#4.4.5 Too many connections to this listener"
BANNER = ("220 %s ESMTP\r\n" % HOSTNAME).encode()


def two_listeners(mailgate, second=None, **kw):
    """A server with listeners 'default' (srv.port) and 'second' (srv.port2)."""
    s = mailgate(start=False, **kw)
    s.port2 = add_listener(s, "second", **(second or {}))
    s.start()
    return s


def failed_logged(srv, mark, icid=None):
    srv.assert_log(r"Info: ICID %s Receiving Failed: \S.*$" % (icid if icid is not None
                                                               else r"\d+"), mark)


# ------------------------------------------------------------------ connections

def test_connections_per_host_across_listeners(mailgate):
    s = two_listeners(mailgate, policy={"max_connections_per_host": 2})
    a = open_session(s, "127.0.0.1")
    b = open_session(s, "127.0.0.1", s.port2)
    # the third from 127.0.0.1, on either listener
    refused_421(s, "127.0.0.1", FROM_HOST)
    refused_421(s, "127.0.0.1", FROM_HOST, port=s.port2)
    # another address is served on both listeners, at the same time
    served_from(s, "127.0.0.2")
    served_from(s, "127.0.0.2", port=s.port2)
    # the two admitted sessions go on
    for c in (a, b):
        c.ehlo()
        c.send_message()
    quit_and_wait(s, a)
    # one slot is free again for 127.0.0.1, and only one
    c = open_session(s, "127.0.0.1", s.port2)
    refused_421(s, "127.0.0.1", FROM_HOST)
    c.quit()
    b.quit()


def test_connections_to_host_across_listeners(mailgate):
    s = two_listeners(mailgate, limits={"max_connections": 2})
    a = open_session(s, "127.0.0.1")
    b = open_session(s, "127.0.0.2", s.port2)
    refused_421(s, "127.0.0.3", TO_HOST)
    refused_421(s, "127.0.0.3", TO_HOST, port=s.port2)
    for c in (a, b):                              # the admitted ones are served
        c.ehlo()
        c.send_message()
    quit_and_wait(s, a)
    # a slot is free: a client from another address gets in, on the other listener
    served_from(s, "127.0.0.3", port=s.port2)
    b.quit()


def test_connections_to_listener(mailgate):
    s = two_listeners(mailgate, listener={"max_connections": 1},
                      second={"max_connections": 50})
    a = open_session(s, "127.0.0.1")
    refused_421(s, "127.0.0.2", TO_LISTENER)
    refused_421(s, "127.0.0.1", TO_LISTENER)
    # the other listener does not count this one's connections
    served_from(s, "127.0.0.2", port=s.port2)
    served_from(s, "127.0.0.1", port=s.port2)
    a.ehlo()
    a.send_message()
    quit_and_wait(s, a)
    served_from(s, "127.0.0.2")


# ------------------------------------------------------------------ per session

def test_messages_per_connection(mailgate):
    s = mailgate(policy={"max_messages_per_connection": 1})
    a = open_session(s, "127.0.0.1")
    a.ehlo()
    mid = a.send_message()
    mark = s.log_mark()
    a.cmd("MAIL FROM:<second@test.example>", 421, "#4.x.2 Too many messages for this session")
    a.expect_closed()
    failed_logged(s, mark, a.icid)
    assert s.queue_mids() == [mid]
    # the limit is per connection: the same host on a new one, and another host
    served_from(s, "127.0.0.1")
    served_from(s, "127.0.0.2")


def test_recipients_per_message(mailgate):
    s = mailgate(policy={"max_recipients_per_message": 2})
    a = open_session(s, "127.0.0.1")
    a.ehlo()
    a.mail("s@test.example")
    a.rcpt("r1@test.example")
    a.rcpt("r2@test.example")
    mark = s.log_mark()
    a.cmd("RCPT TO:<r3@test.example>", 452, "#4.5.3 Too many recipients")
    failed_logged(s, mark, a.icid)
    r = a.data(b"Subject: two\r\n\r\nx\r\n.\r\n")
    assert r.code == 250 and r.mid, r
    assert s.spool_file(r.mid).rcpts == [(0, "<r1@test.example>"), (1, "<r2@test.example>")]
    # the session goes on, the next message has its own count
    a.cmd("NOOP", 250, "ok")
    a.send_message(rcpts=("r4@test.example", "r5@test.example"))
    a.quit()
    served_from(s, "127.0.0.2")


def test_recipients_per_hour_across_listeners(mailgate):
    s = two_listeners(mailgate, policy={"max_recipients_per_hour": 3})
    a = open_session(s, "127.0.0.1")
    a.ehlo()
    a.send_message(rcpts=("r1@test.example", "r2@test.example"))
    a.quit()
    b = open_session(s, "127.0.0.1", s.port2)
    b.ehlo()
    b.mail("s@test.example")
    b.rcpt("r3@test.example")
    mark = s.log_mark()
    b.cmd("RCPT TO:<r4@test.example>", 452, "#4.5.3 Too many recipients received this hour")
    failed_logged(s, mark, b.icid)
    r = b.data(b"Subject: hour\r\n\r\nx\r\n.\r\n")
    assert r.code == 250, r
    assert s.spool_file(r.mid).rcpts == [(0, "<r3@test.example>")]
    b.quit()
    # a new connection on the first listener: still over
    c = open_session(s, "127.0.0.1")
    c.ehlo()
    c.mail("s@test.example")
    c.cmd("RCPT TO:<r5@test.example>", 452, "#4.5.3 Too many recipients received this hour")
    c.cmd("RSET", 250, "ok")
    c.quit()
    # another address has its own hour, on either listener
    d = open_session(s, "127.0.0.2", s.port2)
    d.ehlo()
    d.send_message(rcpts=("x1@test.example", "x2@test.example", "x3@test.example"))
    d.quit()
    served_from(s, "127.0.0.3")


# ------------------------------------------------------------------ queue

def test_queue_max_messages(mailgate):
    s = two_listeners(mailgate, limits={"queue_max_messages": 1})
    a = open_session(s, "127.0.0.1")
    a.ehlo()
    mid = a.send_message()
    mark = s.log_mark()
    a.cmd("MAIL FROM:<more@test.example>", 452, "#4.3.1 queue full")
    failed_logged(s, mark, a.icid)
    a.cmd("NOOP", 250, "ok")                      # a 452 does not close the session
    # the queue is the server's: another address, another listener, same answer
    b = open_session(s, "127.0.0.2", s.port2)
    b.ehlo()
    b.cmd("MAIL FROM:<more@test.example>", 452, "#4.3.1 queue full")
    b.quit()
    a.quit()
    assert s.queue_mids() == [mid]


def test_queue_max_bytes(mailgate):
    s = mailgate(limits={"queue_max_bytes": "4K"})
    a = open_session(s, "127.0.0.1")
    a.ehlo()
    big = b"Subject: big\r\n\r\n" + b"x" * 70 + b"\r\n" + (b"y" * 78 + b"\r\n") * 100
    mid = a.send_message(body=big)
    mark = s.log_mark()
    a.cmd("MAIL FROM:<more@test.example>", 452, "#4.3.1 queue full")
    failed_logged(s, mark, a.icid)
    a.quit()
    b = open_session(s, "127.0.0.2")
    b.ehlo()
    b.cmd("MAIL FROM:<more@test.example>", 452, "#4.3.1 queue full")
    b.quit()
    assert s.queue_mids() == [mid]


def test_queue_max_bytes_not_reached(mailgate):
    """The byte limit counts bytes: small messages under it go through."""
    s = mailgate(limits={"queue_max_bytes": "1M"})
    c = open_session(s, "127.0.0.1")
    c.ehlo()
    for _ in range(3):
        c.send_message()
    c.quit()
    assert len(s.queue_mids()) == 3


# ------------------------------------------------------------------ floods, descriptors

def flood(s, sources_ports, admitted, refusals):
    """Connect once per (source, port), sequentially, reading each first reply.
    Admitted clients are kept open (in `admitted`); refused ones must get a 421,
    be closed by the server, and are counted by text in `refusals`."""
    for source, port in sources_ports:
        c = connect_from(s, source, port)
        r = c.reply()
        if r.raw == BANNER:
            admitted.append((source, port, c))
            continue
        assert r.code == 421, "%s: %r" % (source, r.raw)
        c.expect_closed()
        c.close()
        refusals[r.text] = refusals.get(r.text, 0) + 1


def wait_all_closed_but(s, mark, n_open):
    def ok():
        text = s.log_since(mark)
        return len(re.findall(r"Info: ICID \d+ close$", text, re.M)) >= \
            len(re.findall(r"New SMTP ICID \d+ ", text)) - n_open
    poll_until(ok, 30, 0.05, "the refused connections to be closed")


def test_flood_no_descriptor_leak(mailgate):
    hat = [{"group": "REFUSE", "hosts": ["127.0.3.0/24"], "policy": "REFUSED"},
           {"group": "BLOCK", "hosts": ["127.0.2.0/24"], "policy": "BLOCKED"},
           {"group": "RELAYLIST", "hosts": ["127.0.0.0/8"], "policy": "RELAYED"}]
    s = two_listeners(mailgate, hat=hat,
                      policies={"REFUSED": {"action": "tcprefuse"},
                                "BLOCKED": {"action": "reject"}},
                      policy={"max_connections_per_host": 3},
                      limits={"max_connections": 10},
                      listener={"max_connections": 5}, second={"max_connections": 10})
    # warm up: whatever is opened once on first use (the spool) is open already
    warm = [served_from(s, "127.0.0.1"), served_from(s, "127.0.0.1", port=s.port2)]
    mark0 = s.log_mark()
    before = settled_fds(s, warm)

    admitted, refusals = [], {}
    mark = s.log_mark()
    # 80 from one host, on both listeners: 3 admitted, the rest "from your host"
    flood(s, [("127.0.0.1", (s.port, s.port2)[i % 2]) for i in range(80)], admitted, refusals)
    assert len(admitted) == 3 and refusals == {FROM_HOST: 77}, (len(admitted), refusals)
    wait_all_closed_but(s, mark, len(admitted))
    # 60 hosts on the first listener (max 5, 2 taken): 3 admitted, then "to this listener"
    flood(s, [("127.0.0.%d" % (i + 2), s.port) for i in range(60)], admitted, refusals)
    assert len(admitted) == 6 and refusals[TO_LISTENER] == 57, (len(admitted), refusals)
    wait_all_closed_but(s, mark, len(admitted))
    # 60 hosts on the second: the server's 10 fill up, then "to this host"
    flood(s, [("127.0.1.%d" % (i + 1), s.port2) for i in range(60)], admitted, refusals)
    assert len(admitted) == 10 and refusals[TO_HOST] == 56, (len(admitted), refusals)
    # HAT refusals too: reject (554) and tcprefuse (no banner)
    for i in range(20):
        c = connect_from(s, "127.0.2.%d" % (i + 1), (s.port, s.port2)[i % 2])
        assert c.reply().raw == ("554 %s Access denied\r\n" % HOSTNAME).encode()
        c.expect_closed()
        c.close()
        c = connect_from(s, "127.0.3.%d" % (i + 1), (s.port, s.port2)[i % 2])
        c.expect_closed()
        c.close()
    # every admitted one is still served
    for source, port, c in admitted:
        c.ehlo()
        c.cmd("NOOP", 250, "ok")
    # close them all without a QUIT
    for source, port, c in admitted:
        c.close()
    wait_closes(s, mark, 240)
    mid = served_from(s, "127.0.0.2")             # and the server serves again
    wait_closes(s, mark0, 241)
    # once its delivery attempt is over: its state file is open while it is recorded
    after = settled_fds(s, [mid])
    assert len(after) == len(before), "descriptors before %d, after %d; new: %s; gone: %s" % (
        len(before), len(after),
        {k: v for k, v in after.items() if before.get(k) != v},
        {k: v for k, v in before.items() if after.get(k) != v})


# ------------------------------------------------------------------ memory

def test_temporary_system_error_when_allocation_fails(mailgate):
    """An allocation that fails (played by the test build's fault hook: the file
    <spool>/fault holding "enomem") gives 452 #4.3.1 temporary system error (12),
    and the session survives: the next MAIL, once memory is back, is taken."""
    s = mailgate()
    c = open_session(s, "127.0.0.1")
    c.ehlo()
    fault = s.spool / "fault"
    fault.write_text("enomem\n")
    mark = s.log_mark()
    c.cmd("MAIL FROM:<a@test.example>", 452, "#4.3.1 temporary system error (12)")
    failed_logged(s, mark, c.icid)
    c.cmd("NOOP", 250, "ok")
    fault.unlink()
    mid = c.send_message()
    c.quit()
    assert s.queue_mids() == [mid]
