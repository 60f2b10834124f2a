"""Issue 3: `mailgate listener suspend|resume` and SIGTERM. New connections to a
suspended listener (or a stopping server) get `421 <host> Service not
available, closing transaction channel`; open sessions go on within the grace
delay and get the 421 at their next command once it has passed; resume serves
again; after SIGTERM the server exits once its sessions are closed."""

import signal
import subprocess

from conftest import HOSTNAME, poll_until
from hatlib import (SERVICE_UNAVAILABLE, add_listener, connect_from, noop_until_421,
                    open_session, refused_421, served_from)

BANNER = ("220 %s ESMTP\r\n" % HOSTNAME).encode()


def two_listeners(mailgate, **kw):
    s = mailgate(start=False, **kw)
    s.port2 = add_listener(s, "second")
    s.start()
    return s


def listener_cmd(s, *args, expect_out):
    r = s.cli("listener", *args)
    assert r.returncode == 0, "mailgate listener %s: exit %s, %r %r" % (
        " ".join(args), r.returncode, r.stdout, r.stderr)
    assert r.stdout.decode() == expect_out, r.stdout
    return r


def test_suspend_now_and_resume(mailgate):
    s = two_listeners(mailgate)
    a = open_session(s, "127.0.0.1")
    a.ehlo()
    b = open_session(s, "127.0.0.2", s.port2)
    b.ehlo()
    mark = s.log_mark()
    listener_cmd(s, "suspend", "default", "0", expect_out="listener default suspended\n")
    # new connections to the suspended listener
    refused_421(s, "127.0.0.3", SERVICE_UNAVAILABLE)
    refused_421(s, "127.0.0.1", SERVICE_UNAVAILABLE)
    # the open session on it, at its next command (no grace at all)
    r = noop_until_421(a)
    assert r.raw == ("421 %s\r\n" % SERVICE_UNAVAILABLE).encode(), r
    a.expect_closed()
    s.assert_log(r"Info: ICID %d Receiving Failed: \S.*$" % a.icid, mark)
    # the other listener is not suspended: its session and new clients are served
    b.cmd("NOOP", 250, "ok")
    b.send_message()
    served_from(s, "127.0.0.3", port=s.port2)
    listener_cmd(s, "resume", "default", expect_out="listener default resumed\n")
    served_from(s, "127.0.0.3")
    served_from(s, "127.0.0.1")
    b.quit()


def test_suspend_grace_then_421(mailgate):
    s = mailgate()
    a = open_session(s, "127.0.0.1")
    a.ehlo()
    c = open_session(s, "127.0.0.3")
    c.ehlo()
    c.mail("s@test.example")
    c.rcpt("r@test.example")
    c.cmd("DATA", 354, "go ahead")
    c.send(b"Subject: in flight\r\n\r\nfirst half\r\n")
    listener_cmd(s, "suspend", "default", "3", expect_out="listener default suspended\n")
    # inside the grace: the open session still works
    a.cmd("NOOP", 250, "ok")
    # new ones are refused at once
    refused_421(s, "127.0.0.2", SERVICE_UNAVAILABLE)
    # once the grace is over, the idle session gets the 421 (at its next command)
    r = noop_until_421(a, timeout=30)
    assert r.raw == ("421 %s\r\n" % SERVICE_UNAVAILABLE).encode(), r
    a.expect_closed()
    # the one in the middle of a message is not cut in half: its end of data is
    # answered (250, message kept; or 421, message not kept), then the 421 and close
    c.send(b"second half\r\n.\r\n")
    r = c.reply()
    if r.code == 250:
        assert r.mid in s.queue_mids()
        r = c.reply()
    else:
        assert s.queue_mids() == []
    assert r.raw == ("421 %s\r\n" % SERVICE_UNAVAILABLE).encode(), r
    c.expect_closed()
    listener_cmd(s, "resume", "default", expect_out="listener default resumed\n")
    served_from(s, "127.0.0.2")


def test_sigterm_drains_then_exits(mailgate):
    s = mailgate()
    a = open_session(s, "127.0.0.1")
    a.ehlo()
    a.mail("s@test.example")
    a.rcpt("r@test.example")
    a.cmd("DATA", 354, "go ahead")
    a.send(b"Subject: finishing\r\n\r\nfirst half\r\n")
    s.proc.send_signal(signal.SIGTERM)

    # a new connection gets the 421 once the signal is handled (a client that
    # got in before that is let go with a QUIT)
    def refused():
        c = connect_from(s, "127.0.0.2")
        r = c.reply()
        if r.raw == BANNER:
            c.quit()
            return None
        assert r.raw == ("421 %s\r\n" % SERVICE_UNAVAILABLE).encode(), r
        c.expect_closed()
        return True
    poll_until(refused, 20, 0.05, "a new connection to be refused after SIGTERM")
    assert s.running(), "the server exited with a session in the middle of a message"
    # the open session finishes its message within the grace
    a.send(b"second half\r\n.\r\n")
    r = a.reply()
    assert r.code == 250 and r.mid, r
    assert r.mid in s.queue_mids()
    a.quit()
    # then the server exits by itself, with status 0
    try:
        rc = s.proc.wait(30)
    except subprocess.TimeoutExpired:
        raise AssertionError("mailgate still running 30 s after its last session closed")
    assert rc == 0, "exit status %s; stderr:\n%s" % (rc, s.stderr()[-3000:])
    s.check_sanitizers()
    assert s.spool_file(r.mid).rcpts == [(0, "<r@test.example>")]
