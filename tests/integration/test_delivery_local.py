"""Local delivery and the queue actions, end to end: a maildir route puts each
recipient's copy in <path>/<recipient>/new/ byte for byte and the message leaves
the queue; /dev/null discards; kill -9 after the 250 delivers exactly once or at
most twice, never loses; a maildir that cannot be written defers (recorded, so
`queue show` has the attempts and the error, across a restart); an SMTP route to
a port where nothing listens defers (connection refused, recorded); queue
hold/release/deliver/delete/bounce act on both, with the states in
`queue list --json`."""

import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile

import pytest

from conftest import DEAD_ROUTE, SAN_ENV, check_cli_sanitizers, mailgate_bin, poll_until, stuff

WAIT = 20


def routes(mail):
    """local.example: a maildir; broken.example: a maildir under a plain file (every
    delivery a 451); null.example: /dev/null; the rest: a dead SMTP target."""
    return [{"domain": "local.example", "to": ["maildir:%s" % mail]},
            {"domain": "broken.example", "to": ["maildir:%s" % (mail.parent / "afile" / "mail")]},
            {"domain": "null.example", "to": ["/dev/null"]},
            {"domain": "ALL", "to": [DEAD_ROUTE]}]


def local_server(mailgate, tmp_path, delivery=None):
    mail = tmp_path / "mail"
    (tmp_path / "afile").write_text("not a directory\n")
    top = {"routes": routes(mail)}
    if delivery:
        top["delivery"] = delivery
    return mailgate(top=top), mail


def new_files(mail, box):
    d = mail / box / "new"
    try:
        return sorted(d.iterdir())
    except FileNotFoundError:
        return []


def split_received(data):
    """Our Received: header (first line and its continuations), and the rest."""
    assert data[:9].lower() == b"received:", data[:200]
    end = data.find(b"\n") + 1
    while end < len(data) and data[end:end + 1] in (b" ", b"\t"):
        nl = data.find(b"\n", end)
        end = len(data) if nl < 0 else nl + 1
    return data[:end], data[end:]


def gone(s, mid):
    return mid not in s.queue_mids() and not (s.spool / "state" / str(mid)).exists()


def states(s, mid):
    for m in s.queue_list_json():
        if m["mid"] == mid:
            return [r["state"] for r in m["recipients"]]
    return None


def ok(r):
    check_cli_sanitizers(r)
    return r.returncode == 0


def out(r):
    return "exit %s\nstdout: %s\nstderr: %s" % (r.returncode, r.stdout.decode(errors="replace"),
                                               r.stderr.decode(errors="replace"))


BODY = (b"Subject: local delivery\r\nMessage-ID: <local@test.example>\r\n\r\n"
        b"first line\r\n.a line that starts with a dot\r\n..two dots\r\n"
        + b"".join(b"line %04d of a longer message, to be copied exactly\r\n" % i
                   for i in range(2000)))


# ------------------------------------------------------------------ maildir and /dev/null

def test_maildir_delivery(mailgate, tmp_path):
    s, mail = local_server(mailgate, tmp_path)
    mark = s.log_mark()
    c = s.connect()
    c.ehlo()
    mid = c.send_message(sender="from@test.example",
                         rcpts=["User@Local.example", "second@local.example"], body=stuff(BODY))
    c.quit()
    for box in ("user@local.example", "second@local.example"):
        files = poll_until(lambda: new_files(mail, box), WAIT, what="a file in %s/new" % box)
        assert len(files) == 1, files
        assert re.fullmatch(r"\d+\.\d+_\d+\.[^/:]+", files[0].name), files[0].name
        received, rest = split_received(files[0].read_bytes())
        assert rest == BODY
        assert re.search(rb"\bid %d\b" % mid, received), received
        assert list((mail / box / "tmp").iterdir()) == []
        assert (mail / box / "cur").is_dir()
    poll_until(lambda: gone(s, mid), WAIT, what="MID %d to leave the queue" % mid)
    s.wait_log(r"Info: Message finished MID %d done$" % mid, mark)
    log = s.log_since(mark)
    assert re.search(r"Info: Delivery start DCID 0 MID %d to RID \[0, 1\]$" % mid, log, re.M), log
    assert re.search(r"Info: Message done DCID 0 MID %d to RID \[0, 1\]$" % mid, log, re.M), log
    assert "Delayed:" not in log and "Bounced:" not in log, log


def test_maildir_copy_is_the_spool_file_byte_for_byte(mailgate, tmp_path):
    """The message waits on a dead route, its queue file is read, then a reload
    routes its domain to a maildir and `queue deliver` sends it there."""
    s, mail = local_server(mailgate, tmp_path)
    c = s.connect()
    c.ehlo()
    mark = s.log_mark()
    mid = c.send_message(rcpts=["later@wait.example"], body=stuff(BODY))
    c.quit()
    s.wait_log(r"Info: Delayed: DCID 0 MID %d to RID \[0\] " % mid, mark)
    stored = s.spool_file(mid).message
    s.settings["routes"] = [{"domain": "wait.example", "to": ["maildir:%s" % mail]}] + \
        routes(mail)
    s.write_config()
    r = s.cli("reload")
    assert ok(r), out(r)
    r = s.cli("queue", "deliver", "wait.example")
    assert ok(r), out(r)
    assert b"1 deferred recipient due now" in r.stdout, out(r)
    files = poll_until(lambda: new_files(mail, "later@wait.example"), WAIT,
                       what="the file in the maildir")
    assert files[0].read_bytes() == stored
    poll_until(lambda: gone(s, mid), WAIT, what="MID %d to leave the queue" % mid)


def test_devnull_leaves_the_queue(mailgate, tmp_path):
    s, _ = local_server(mailgate, tmp_path)
    mark = s.log_mark()
    c = s.connect()
    c.ehlo()
    mid = c.send_message(rcpts=["a@null.example", "b@NULL.example"])
    c.quit()
    poll_until(lambda: gone(s, mid), WAIT, what="MID %d to leave the queue" % mid)
    s.assert_log(r"Info: Message done DCID 0 MID %d to RID \[0, 1\]$" % mid, mark)
    s.assert_log(r"Info: Message finished MID %d done$" % mid, mark)
    st = s.cli("status", "--json")
    assert ok(st), out(st)


def test_mixed_routes_states(mailgate, tmp_path):
    s, mail = local_server(mailgate, tmp_path)
    c = s.connect()
    c.ehlo()
    mid = c.send_message(rcpts=["u@local.example", "n@null.example", "d@dead.example",
                                "b@broken.example"])
    c.quit()
    # the dead SMTP route refuses the connection: deferred, like the broken maildir
    poll_until(lambda: states(s, mid) == ["delivered", "delivered", "deferred", "deferred"],
               WAIT, what="delivered, delivered, deferred, deferred")
    assert len(new_files(mail, "u@local.example")) == 1
    r = s.cli("queue", "list")
    assert ok(r), out(r)
    assert re.search(r"u@local\.example \(delivered\), n@null\.example \(delivered\), "
                     r"d@dead\.example \(deferred\), b@broken\.example \(deferred\)",
                     r.stdout.decode()), out(r)


# ------------------------------------------------------------------ crashes

def test_kill9_after_250_delivers_at_least_once_at_most_twice(mailgate, tmp_path):
    s, mail = local_server(mailgate, tmp_path)
    c = s.connect()
    c.ehlo()
    mids = []
    for i in range(8):
        body = b"Subject: crash %d\r\n\r\nmessage number %d\r\n" % (i, i)
        mids.append(c.send_message(rcpts=["crash@local.example"], body=body))
    s.kill()                    # right after the last 250: deliveries in every stage
    s.start()
    for mid in mids:
        poll_until(lambda: gone(s, mid), WAIT, what="MID %d to leave the queue" % mid)
    texts = [p.read_bytes() for p in new_files(mail, "crash@local.example")]
    for i in range(8):
        n = sum(1 for t in texts if b"\r\nmessage number %d\r\n" % i in t)
        assert 1 <= n <= 2, "message %d delivered %d times" % (i, n)


def test_deferred_state_survives_restart(mailgate, tmp_path):
    s, _ = local_server(mailgate, tmp_path)
    c = s.connect()
    c.ehlo()
    mark = s.log_mark()
    mid = c.send_message(rcpts=["d@broken.example"])
    c.quit()
    poll_until(lambda: states(s, mid) == ["deferred"], WAIT, what="the recipient deferred")
    s.assert_log(r"Info: Delayed: DCID 0 MID %d to RID \[0\] - 4\.3\.0 - Other mail system "
                 r"problem \('451', \['maildir \S+/afile/mail: cannot open the maildir root: "
                 r"Not a directory'\]\)$" % mid, mark)
    before = (s.spool / "state" / str(mid)).read_bytes()
    s.kill()
    s.start()
    # a control call is answered after the start-up dispatch has run
    r = s.cli("queue", "deliver", "no-such-domain.example")
    assert ok(r), out(r)
    assert b"0 deferred recipients due now" in r.stdout, out(r)
    assert states(s, mid) == ["deferred"]
    # not due for an hour: not tried again on restart
    assert (s.spool / "state" / str(mid)).read_bytes() == before
    r = s.cli("queue", "show", str(mid))
    assert ok(r), out(r)
    assert re.search(rb"0 <d@broken\.example> deferred, 1 attempt, next \S+ \(in \d+[smh]\)",
                     r.stdout), out(r)
    assert b"last error: 451 4.3.0 maildir " in r.stdout, out(r)


def test_torn_state_line_after_crash(mailgate, tmp_path):
    s, _ = local_server(mailgate, tmp_path)
    c = s.connect()
    c.ehlo()
    mid = c.send_message(rcpts=["d@broken.example", "u@local.example"])
    c.quit()
    poll_until(lambda: states(s, mid) == ["deferred", "delivered"], WAIT,
               what="deferred, delivered")
    s.stop()
    path = s.spool / "state" / str(mid)
    good = path.read_bytes()
    path.write_bytes(good + b"rid 0 deliv")          # a crash in the middle of an append
    assert states(s, mid) == ["deferred", "delivered"]   # readers ignore it
    s.start()
    r = s.cli("queue", "hold", str(mid))              # appends after the cut
    assert ok(r), out(r)
    poll_until(lambda: path.read_bytes().startswith(good + b"held "), WAIT,
               what="the torn line cut off and the hold appended")
    assert b"deliv" not in path.read_bytes()[len(good):]


# ------------------------------------------------------------------ no SMTP yet, queue actions

def test_smtp_route_deferred(mailgate, tmp_path):
    s, _ = local_server(mailgate, tmp_path)
    mark = s.log_mark()
    c = s.connect()
    c.ehlo()
    mid = c.send_message(rcpts=["x@dead.example"])
    c.quit()
    # nothing listens on the route's port: no connection, so no DCID and no reply code
    s.wait_log(r"Info: Delayed: DCID 0 MID %d to RID \[0\] - 4\.\d+\.\d+ - .* "
               r"\('000', \[.*\]\)$" % mid, mark)
    # an attempt: recorded durably, deferred on disk, still in the queue
    poll_until(lambda: states(s, mid) == ["deferred"], WAIT, what="deferred")
    assert (s.spool / "state" / str(mid)).exists()
    assert mid in s.queue_mids()


def delayed(s, mid, rid, mark=0):
    return len(re.findall(r"Info: Delayed: DCID 0 MID %d to RID \[%d\] " % (mid, rid),
                          s.log_since(mark)))


def test_queue_actions(mailgate, tmp_path):
    s, _ = local_server(mailgate, tmp_path)
    mark0 = s.log_mark()
    c = s.connect()
    c.ehlo()
    mid = c.send_message(rcpts=["a@dead.example", "b@broken.example"])
    mid2 = c.send_message(rcpts=["c@dead.example"])
    c.quit()
    poll_until(lambda: delayed(s, mid, 0, mark0) and delayed(s, mid, 1, mark0) and
               delayed(s, mid2, 0, mark0), WAIT, what="every recipient delayed")
    poll_until(lambda: states(s, mid) == ["deferred", "deferred"], WAIT,
               what="deferred (connection refused), deferred (a maildir 451)")

    mark = s.log_mark()
    r = s.cli("queue", "hold", str(mid))
    assert ok(r), out(r)
    assert r.stdout.decode() == "MID %d held\n" % mid, out(r)
    assert states(s, mid) == ["held", "held"]
    assert states(s, mid2) == ["deferred"]
    s.assert_log(r"Info: MID %d held by operator$" % mid, mark)
    r = s.cli("queue", "show", str(mid))
    assert ok(r) and b"Held:       yes" in r.stdout, out(r)

    # deliver now: the held message is left alone, the other is tried again
    mark = s.log_mark()
    r = s.cli("queue", "deliver")
    assert ok(r), out(r)
    assert r.stdout == b"1 deferred recipient due now\n", out(r)
    s.wait_log(r"Info: Delayed: DCID 0 MID %d to RID \[0\] - 4\." % mid2, mark)
    assert "MID %d to RID" % mid not in s.log_since(mark)

    r = s.cli("queue", "release", str(mid))
    assert ok(r), out(r)
    assert r.stdout.decode() == "MID %d released\n" % mid, out(r)
    assert states(s, mid) == ["deferred", "deferred"]
    # one domain only, in any case: the maildir recipient, a second recorded attempt
    mark = s.log_mark()
    r = s.cli("queue", "deliver", "BROKEN.example")
    assert ok(r) and r.stdout == b"1 deferred recipient due now for BROKEN.example\n", out(r)
    s.wait_log(r"Info: Delayed: DCID 0 MID %d to RID \[1\] - 4\.3\.0 " % mid, mark)
    assert delayed(s, mid, 0, mark) == 0
    poll_until(lambda: b"2 attempts" in s.cli("queue", "show", str(mid)).stdout, WAIT,
               what="a second attempt recorded")

    # an unknown MID: nothing is done, exit 1
    r = s.cli("queue", "delete", str(mid), "999999")
    check_cli_sanitizers(r)
    assert r.returncode == 1, out(r)
    assert b"no message 999999 in the queue" in r.stderr, out(r)
    assert mid in s.queue_mids()

    mark = s.log_mark()
    r = s.cli("queue", "delete", str(mid))
    assert ok(r) and r.stdout.decode() == "MID %d deleted\n" % mid, out(r)
    s.assert_log(r"Info: Message aborted MID %d deleted by operator$" % mid, mark)
    poll_until(lambda: gone(s, mid), WAIT, what="MID %d removed" % mid)
    r = s.cli("queue", "delete", str(mid))
    assert r.returncode == 1, out(r)

    mark = s.log_mark()
    r = s.cli("queue", "bounce", str(mid2))
    assert ok(r) and r.stdout.decode() == "MID %d bounced\n" % mid2, out(r)
    s.wait_log(r"Info: Bounced: DCID 0 MID %d to RID \[0\] - 5\.0\.0 - Bounced by operator "
               r"\('000', \['bounced by operator'\]\)$" % mid2, mark)
    s.wait_log(r"Info: Message finished MID %d done$" % mid2, mark)
    poll_until(lambda: gone(s, mid2), WAIT, what="MID %d removed" % mid2)
    # what is left is the bounce (RFC 3464) from <> to the original sender
    m = re.search(r"Info: MID (\d+) was generated for bounce of MID %d$" % mid2,
                  s.log_since(mark), re.M)
    assert m, s.log_since(mark)
    left = s.queue_list_json()
    assert [e["mid"] for e in left] == [int(m.group(1))], left
    assert left[0]["sender"] == "" and len(left[0]["recipients"]) == 1, left


@pytest.mark.parametrize("args", [["hold"], ["hold", "abc"], ["release", "0"], ["bounce", "-1"],
                                  ["delete", "1x"], ["deliver", "a.example", "b.example"]])
def test_queue_action_usage(mailgate, tmp_path, args):
    s, _ = local_server(mailgate, tmp_path)
    r = s.cli("queue", *args)
    check_cli_sanitizers(r)
    assert r.returncode == 2, out(r)
    assert b"usage" in r.stderr, out(r)


def test_queue_actions_need_the_server(mailgate, tmp_path):
    s, _ = local_server(mailgate, tmp_path)
    s.stop()
    for args in (["hold", "1"], ["deliver"]):
        r = s.cli("queue", *args)
        check_cli_sanitizers(r)
        assert r.returncode == 2, out(r)
        assert b"no mailgate server is running" in r.stderr, out(r)
    r = s.cli("queue", "list", "--json")
    assert ok(r), out(r)


def test_lifetime_over_bounces(mailgate, tmp_path):
    s, _ = local_server(mailgate, tmp_path,
                        delivery={"retry_initial": 1, "retry_max": 1, "max_lifetime": 2})
    mark = s.log_mark()
    c = s.connect()
    c.ehlo()
    mid = c.send_message(rcpts=["x@dead.example"])
    c.quit()
    s.wait_log(r"Info: Bounced: DCID 0 MID %d to RID \[0\] - 5\.4\.7 - Delivery expired "
               r"\(message too old\) \('000', \[.*\]\)$" % mid, mark,
               timeout=WAIT)
    poll_until(lambda: gone(s, mid), WAIT, what="MID %d to leave the queue" % mid)


# ------------------------------------------------------------------ the embedded default

def port_free(port):
    sk = socket.socket()
    try:
        sk.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sk.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        sk.close()


def test_embedded_default_delivers_to_maildir(tmp_path):
    if not port_free(2525):
        pytest.skip("127.0.0.1:2525 is in use")
    sockdir = tempfile.mkdtemp(prefix="mgit-")
    npath = os.path.join(sockdir, "notify")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(npath)
    env = dict(os.environ, NOTIFY_SOCKET=npath)
    for k, v in SAN_ENV.items():
        env.setdefault(k, v)
    errf = open(tmp_path / "stderr.txt", "wb")
    proc = subprocess.Popen([mailgate_bin(), "serve"], cwd=str(tmp_path), env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errf)
    try:
        ns.settimeout(20)
        got = b""
        while b"READY=1" not in got:
            got += ns.recv(4096)
        smtp = smtplib.SMTP("127.0.0.1", 2525, local_hostname="dev.example", timeout=30)
        smtp.sendmail("dev@localhost", ["me@localhost"], b"Subject: dev\r\n\r\nhello\r\n")
        smtp.quit()
        box = tmp_path / "mailgate-spool" / "mailboxes" / "me@localhost" / "new"
        files = poll_until(lambda: box.is_dir() and list(box.iterdir()), WAIT,
                           what="the message in %s" % box)
        assert files[0].read_bytes().endswith(b"Subject: dev\r\n\r\nhello\r\n")
        poll_until(lambda: not [p for p in (tmp_path / "mailgate-spool" / "queue").iterdir()],
                   WAIT, what="the queue to empty")
    finally:
        ns.close()
        shutil.rmtree(sockdir, ignore_errors=True)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        errf.close()
    err = (tmp_path / "stderr.txt").read_text(errors="replace")
    for mark in ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer"):
        assert mark not in err, err[-5000:]
    assert proc.returncode == 0, err[-3000:]
