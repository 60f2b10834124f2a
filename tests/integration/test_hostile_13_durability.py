"""Hostile input, class 13 of spec/hostile.md: durability faults.

What was acknowledged survives kill -9, nothing half-written is ever delivered, and
spool faults (full disk, I/O errors) give 452/451, never a 250; the server recovers
by itself. Each test runs its own server (it is killed or its disk filled), and
ends by checking that the server, or its successor on the same spool, still serves."""

import os
import re
import threading

import pytest

from conftest import poll_until
from hostilelib import assert_left_clean, hostile_server

ACCEPTED = re.compile(r"ok: Message \d+ accepted")
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


def body_for(i, size=200):
    """A message of about `size` octets in lines of 78, distinct for each i."""
    head = b"Subject: durable %d\r\nMessage-ID: <%d@durable.example>\r\n\r\n" % (i, i)
    line = ((b"message %d " % i) * 20)[:76] + b"\r\n"
    return head + line * (size // len(line) + 1)


def test_kill9_right_after_250(mailgate):
    s = mailgate()
    c = s.connect()
    c.ehlo()
    body = body_for(1, 5000)
    mid = c.send_message(sender="k@test.example", rcpts=["r1@test.example", "r2@test.example"],
                         body=body)
    s.kill()                                   # no drain, no flush: only what is on disk counts
    # the spool is readable without a server
    listed = {m["mid"]: m for m in s.queue_list_json()}
    assert mid in listed, listed
    s.start()
    sf = s.spool_file(mid)
    assert sf.body == body
    assert sf.field("sender") == "<k@test.example>"
    assert sf.rcpts == [(0, "<r1@test.example>"), (1, "<r2@test.example>")]
    listed = {m["mid"]: m for m in s.queue_list_json()}
    m = listed[mid]
    assert m["sender"] == "k@test.example", m
    assert RFC3339.fullmatch(m["arrival"]), m
    assert isinstance(m["size"], int) and m["size"] >= len(body), m
    assert [(x["rid"], x["address"]) for x in m["recipients"]] == \
        [(0, "r1@test.example"), (1, "r2@test.example")]
    assert all(x["state"] in ("queued", "deferred") for x in m["recipients"]), m
    assert s.tmp_names() == []


def test_kill9_concurrent_clients(mailgate):
    s = mailgate()
    nthreads, per = 6, 4
    results, errors = {}, []

    def client(t):
        try:
            c = s.raw_connect()
            c.banner()
            c.ehlo("thread%d.example" % t)
            for i in range(per):
                k = t * 100 + i
                mid = c.send_message(sender="t%d@test.example" % t,
                                     rcpts=["r%d@test.example" % k], body=body_for(k, 1000 + k))
                results[k] = mid
            c.quit()
        except BaseException as e:        # reported below
            errors.append("thread %d: %r" % (t, e))

    threads = [threading.Thread(target=client, args=(t,)) for t in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(results) == nthreads * per
    mids = list(results.values())
    assert len(set(mids)) == len(mids), "a MID was handed out twice: %s" % sorted(mids)
    s.kill()
    s.start()
    for k, mid in results.items():
        sf = s.spool_file(mid)
        assert sf.body == body_for(k, 1000 + k), "MID %d" % mid
        assert sf.rcpts == [(0, "<r%d@test.example>" % k)]
    assert set(mids) <= set(s.queue_mids())


def test_tmp_leftover_removed_at_start(mailgate):
    s = mailgate()
    c = s.connect()
    c.ehlo()
    mid = c.send_message()
    c.quit()
    s.kill()
    s.tmp_dir.mkdir(parents=True, exist_ok=True)
    (s.tmp_dir / "12345").write_bytes(b"mailgate-spool 1\nmid 12345\n\nhalf a messa")
    (s.tmp_dir / "leftover.partial").write_bytes(b"junk")
    s.start()
    assert s.tmp_names() == [], "crash leftovers in tmp/ survived a start: %s" % s.tmp_names()
    assert s.queue_mids() == [mid], "a tmp/ leftover must never be queued"
    s.assert_serving()


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_mids_grow_across_restarts(mailgate, how):
    s = mailgate()
    c = s.connect()
    c.ehlo()
    first = [c.send_message() for _ in range(3)]
    # a transaction that got a MID (Start MID) but was never acknowledged
    mark = s.log_mark()
    c.mail("pending@test.example")
    started = s.log_since(mark)
    pending = [int(x) for x in re.findall(r"Start MID (\d+) ", started)]
    seen = max(first + pending)
    if how == "kill9":
        s.kill()
    else:
        c.close()
        s.stop()
    s.start()
    c = s.connect()
    c.ehlo()
    after = [c.send_message() for _ in range(2)]
    c.quit()
    assert after[0] > seen, "MID %d after restart is not above %d handed out before" % (after[0],
                                                                                      seen)
    assert after[0] < after[1]
    for m in first + after:
        s.spool_file(m)


def test_second_server_on_same_spool_refuses(mailgate):
    s = mailgate()
    t = mailgate(start=False, top={"spool": str(s.spool)})
    t.start(expect_ready=False)
    try:
        rc = t.proc.wait(20)
    except Exception:
        t.proc.kill()
        t.proc.wait()
        raise AssertionError("a second server on a locked spool kept running")
    t.proc = None
    assert rc != 0
    t.check_sanitizers()
    s.assert_serving()


# ------------------------------------------------------------------ faults

def send_expect_451(s, c, body=b"Subject: fault\r\n\r\nx\r\n"):
    """A transaction under a spool fault: 451 #4.3.0 Server Error at any step of
    the transaction, never 250. Returns the step that failed."""
    steps = [("MAIL", "MAIL FROM:<fault@test.example>"), ("RCPT", "RCPT TO:<r@test.example>"),
             ("DATA", "DATA")]
    for name, line in steps:
        r = c.cmd(line)
        if r.code == 451:
            assert r.text == "#4.3.0 Server Error", r
            return name
        assert r.code in (250, 354), "%s: %r" % (name, r)
    c.send(body + b".\r\n")
    r = c.reply()
    assert r.raw == b"451 #4.3.0 Server Error\r\n", \
        "expected 451 #4.3.0 Server Error at end of data, got %r" % r.raw
    return "end of data"


@pytest.fixture(scope="module")
def srv_fault(mailgate_module):
    """One server through every fault in turn; test_class13_zz_left_clean checks it after."""
    return hostile_server(mailgate_module)


@pytest.mark.parametrize("fault", ["enospc", "eio", "sync-eio"])
def test_fault_hook_gives_451_then_recovers(srv_fault, fault):
    s = srv_fault
    c = s.connect()
    c.ehlo()
    ok1 = c.send_message()
    before = s.queue_mids()
    (s.spool / "fault").write_text(fault + "\n")
    mark = s.log_mark()
    for i in range(2):
        step = send_expect_451(s, c, body_for(i, 3000))
        print("451 came at", step)
        if step != "end of data":
            c.cmd("RSET", 250)
    s.assert_failed_logged(c, mark)
    assert s.queue_mids() == before, "a message answered 451 is in queue/"
    c.quit()
    s.wait_closed_logged(c, mark)
    assert s.tmp_settled() == [], "a failed message left %s in tmp/" % s.tmp_settled()
    os.unlink(s.spool / "fault")
    c = s.connect()
    c.ehlo()
    ok2 = c.send_message(body=body_for(9, 3000))
    c.quit()
    assert ok2 > ok1
    assert s.spool_file(ok2).body == body_for(9, 3000)
    assert s.queue_mids() == before + [ok2]


def test_fault_hook_big_message_rest_is_read(mailgate):
    """With writes failing mid-message the server still reads to the real end of
    data (nothing in the message becomes a command) before its 451."""
    s = mailgate()
    (s.spool / "fault").write_text("eio")
    c = s.connect()
    c.ehlo()
    mark = s.log_mark()
    body = body_for(1, 200000) + b"MAIL FROM:<evil@fault.example>\r\nRCPT TO:<x@y.example>\r\n"
    step = send_expect_451(s, c, body)
    if step != "end of data":
        c.cmd("RSET", 250)
    c.cmd("NOOP", 250, "ok")
    c.quit()
    assert "evil@fault.example" not in s.log_since(mark)
    assert s.queue_mids() == []


def statvfs_free(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill_to(path, filler, free_wanted):
    """Grow or shrink the filler file until the filesystem has about free_wanted octets free."""
    cur = filler.stat().st_size if filler.exists() else 0
    target = cur + statvfs_free(path) - free_wanted
    assert target >= 0
    with open(filler, "ab") as f:
        f.truncate(0)
        chunk = b"\0" * (1 << 20)
        left = target
        while left > 0:
            try:
                f.write(chunk[:min(left, len(chunk))])
            except OSError:
                break
            left -= min(left, len(chunk))
        f.flush()
        os.fsync(f.fileno())


def mail_until(c, code, timeout=15):
    """Retry MAIL (the server refreshes its free-space figure about once a second)
    until it answers `code`."""
    def attempt():
        r = c.cmd("MAIL FROM:<disk@test.example>")
        if r.code == code:
            return r
        if r.code == 250:
            c.cmd("RSET", 250)
        else:
            assert r.code == 452, r
        return None
    return poll_until(attempt, timeout, 0.2, "MAIL to be answered %d" % code)


def test_full_disk_tmpfs(tmpfs, mailgate):
    MiB = 1 << 20
    s = mailgate(start=False, top={"spool": str(tmpfs / "spool")},
                 limits={"min_free_disk": "2M"})
    s.start()
    filler = tmpfs / "filler"
    c = s.connect()
    c.ehlo()
    ok1 = c.send_message()

    # 1. below min_free_disk: 452 at MAIL
    fill_to(tmpfs, filler, 1 * MiB)
    mark = s.log_mark()
    r = mail_until(c, 452)
    assert r.raw == b"452 #4.3.1 server resources low - try again later\r\n", r
    s.assert_failed_logged(c, mark)

    # 2. above min_free_disk, but a message bigger than what is left: 451 at end of data
    fill_to(tmpfs, filler, 3 * MiB + MiB // 2)
    mail_until(c, 250)
    c.rcpt("r@test.example")
    c.cmd("DATA", 354)
    mark = s.log_mark()
    big = body_for(2, 5 * MiB)
    c.send(big + b".\r\n")
    r = c.reply(timeout=60)
    assert r.raw == b"451 #4.3.0 Server Error\r\n", r
    s.assert_failed_logged(c, mark, count=1)
    assert s.queue_mids() == [ok1]
    c.cmd("NOOP", 250, "ok")

    # 3. space comes back: the server recovers by itself
    filler.unlink()
    mail_until(c, 250)
    c.rcpt("r@test.example")
    r = c.data(body_for(3, 4 * MiB) + b".\r\n", timeout=60)
    assert r.code == 250, r
    c.quit()
    s.wait_closed_logged(c, mark)
    assert s.queue_mids() == [ok1, r.mid]
    assert s.spool_file(r.mid).body == body_for(3, 4 * MiB)
    assert s.tmp_settled() == []
    s.stop()                                    # before the tmpfs fixture unmounts


def test_class13_zz_left_clean(srv_fault):
    """The server that went through the I/O faults still serves, and holds no more
    descriptors or heap than before them (the killed servers of this module are
    checked by their successors serving)."""
    assert_left_clean(srv_fault)
