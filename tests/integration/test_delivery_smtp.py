"""SMTP delivery end to end (issue 6): mailgate's outbound client against the
scriptable sink of smtpsink.py on 127.0.0.1, through `host:port` routes.

Each message arrives byte for byte (our Received: header, then the client's
bytes); recipients of several domains go in one transaction per domain; a 451
is retried after the backoff and then delivered; a 550 bounces into an RFC 3464
DSN from MAILER-DAEMON that is itself delivered, and never for a null sender; a
server that hangs is timed out (the test build's MAILGATE_TEST_MTA_TIMEOUT_MS
hook, since no config setting shortens RFC 5321's minutes) and the message is
tried again; a connection cut in the middle of DATA is tried again; a kill -9
while a delivery hangs at the sink loses nothing. Every wait is a poll of the
sink or the mail log with a deadline."""

import email
import email.policy
import json
import re
import threading

import pytest

from conftest import HOSTNAME, poll_until, stuff
from smtpclient import Client
from smtpsink import BADTLS, DROP, HANG, SmtpSink
from test_delivery_local import gone, split_received
from tlsauth import make_cert

WAIT = 30
# retries after a second, so a test waits for an event, not for minutes
FAST = {"retry_initial": 1, "retry_max": 1}
TIMEOUT_MS = "5000"


@pytest.fixture
def sink():
    s = SmtpSink().start()
    yield s
    s.stop()


def sink_server(mailgate, sink, delivery=None, env=None, extra_routes=()):
    """Every domain goes to the sink (the DSNs to the senders too)."""
    top = {"routes": list(extra_routes) + [{"domain": "ALL", "to": [sink.route]}]}
    top["delivery"] = dict(delivery or FAST)
    return mailgate(top=top, env=env)


def send(s, sender="sender@back.example", rcpts=("user@a.example",), body=None):
    c = s.connect()
    c.ehlo()
    mid = c.send_message(sender=sender, rcpts=list(rcpts),
                         body=stuff(body if body is not None else BODY))
    c.quit()
    return mid


def finished(s, mid, mark=0, timeout=WAIT):
    s.wait_log(r"Info: Message finished MID %d done$" % mid, mark, timeout=timeout)
    poll_until(lambda: gone(s, mid), WAIT, what="MID %d to leave the queue" % mid)


def dcids(log, mid):
    """The DCIDs of the 'Delivery start' lines of a MID."""
    return [int(d) for d in re.findall(r"Info: Delivery start DCID (\d+) MID %d to RID " % mid,
                                       log)]


BODY = (b"Subject: to the sink\r\nMessage-ID: <sink@test.example>\r\n\r\n"
        b"first line\r\n.a line that starts with a dot\r\n..two dots\r\n.\r\n"
        b"a line with trailing spaces   \r\n\tand a tab\r\n"
        + b"".join(b"line %04d of a longer message, to be copied exactly\r\n" % i
                   for i in range(3000)))


# ------------------------------------------------------------------ delivered

def test_byte_for_byte_several_domains(mailgate, sink):
    s = sink_server(mailgate, sink)
    mark = s.log_mark()
    mid = send(s, rcpts=["one@a.example", "two@b.example", "Three@A.example"])
    msgs = sink.wait_messages(2, WAIT)
    finished(s, mid, mark)
    assert len(sink.messages) == 2, sink.messages
    by_rcpts = {tuple(m.rcpts): m for m in sink.messages}
    # one transaction per domain, the recipients as given
    assert set(by_rcpts) == {("one@a.example", "Three@A.example"), ("two@b.example",)}, msgs
    for m in msgs:
        assert m.sender == "sender@back.example"
        assert m.helo == HOSTNAME
        received, rest = split_received(m.data)
        assert rest == BODY
        assert re.search(rb"\bid %d\b" % mid, received), received
        assert received.startswith(b"Received: from client.test.example"), received
        # what went over the wire was dot-stuffed
        assert b"\r\n..a line that starts with a dot\r\n...two dots\r\n..\r\n" in m.raw
    log = s.log_since(mark)
    for m in msgs:
        rids = "[0, 2]" if len(m.rcpts) == 2 else "[1]"
        d = [int(x) for x in re.findall(r"Info: Delivery start DCID (\d+) MID %d to RID %s$"
                                        % (mid, re.escape(rids)), log, re.M)]
        assert len(d) == 1, log
        assert re.search(r"Info: New SMTP DCID %d interface \S+ address 127\.0\.0\.1 port %d$"
                         % (d[0], sink.port), log, re.M), log
        assert re.search(r"Info: Message done DCID %d MID %d to RID %s$"
                         % (d[0], mid, re.escape(rids)), log, re.M), log
        s.wait_log(r"Info: DCID %d close$" % d[0], mark)
    assert "Delayed:" not in log and "Bounced:" not in log, log


def test_several_messages_and_recipients(mailgate, sink):
    s = sink_server(mailgate, sink)
    mark = s.log_mark()
    c = s.connect()
    c.ehlo()
    mids = []
    for i in range(5):
        body = b"Subject: number %d\r\n\r\nmessage %d\r\n" % (i, i)
        mids.append(c.send_message(sender="s%d@back.example" % i,
                                   rcpts=["r%d@x.example" % k for k in range(i + 1)], body=body))
    c.quit()
    for mid in mids:
        finished(s, mid, mark)
    got = {}
    for m in sink.messages:
        got.setdefault(m.sender, []).extend(m.rcpts)
    for i in range(5):
        assert sorted(got["s%d@back.example" % i]) == \
            sorted("r%d@x.example" % k for k in range(i + 1)), got
    for m in sink.messages:
        i = int(m.sender[1])
        assert split_received(m.data)[1] == b"Subject: number %d\r\n\r\nmessage %d\r\n" % (i, i)


def test_451_then_250_delivered_after_a_retry(mailgate, sink):
    sink.set("DOT", ["451 4.3.0 please try again later", None])
    s = sink_server(mailgate, sink)
    mark = s.log_mark()
    mid = send(s, rcpts=["later@a.example"])
    s.wait_log(r"Info: Delayed: DCID \d+ MID %d to RID \[0\] - 4\.3\.0 - Other mail system "
               r"problem \('451', \['4\.3\.0 please try again later'\]\)$" % mid, mark)
    msgs = sink.wait_messages(1, WAIT)
    finished(s, mid, mark)
    assert split_received(msgs[0].data)[1] == BODY
    assert sink.counts["DOT"] == 2
    log = s.log_since(mark)
    assert len(dcids(log, mid)) == 2, log
    assert re.search(r"Info: Message done DCID %d MID %d to RID \[0\]$" % (dcids(log, mid)[1], mid),
                     log, re.M), log
    assert "Bounced:" not in log


def test_451_for_one_recipient_only(mailgate, sink):
    sink.set("RCPT", lambda a: "451 4.2.1 mailbox busy" if a == "busy@a.example" and
             sink.counts["RCPT"] <= 2 else None)
    s = sink_server(mailgate, sink)
    mark = s.log_mark()
    mid = send(s, rcpts=["free@a.example", "busy@a.example"])
    s.wait_log(r"Info: Delayed: DCID \d+ MID %d to RID \[1\] - 4\.2\.1 - Other mailbox problem "
               r"\('451', \['4\.2\.1 mailbox busy'\]\)$" % mid, mark)
    finished(s, mid, mark)
    assert [m.rcpts for m in sink.messages] == [["free@a.example"], ["busy@a.example"]]
    log = s.log_since(mark)
    d = dcids(log, mid)
    assert re.search(r"Info: Message done DCID %d MID %d to RID \[0\]$" % (d[0], mid), log, re.M)
    assert re.search(r"Info: Message done DCID %d MID %d to RID \[1\]$" % (d[1], mid), log, re.M)


# ------------------------------------------------------------------ bounces

def parse(data):
    return email.message_from_bytes(data, policy=email.policy.compat32)


def test_550_bounces_into_a_dsn_that_is_delivered(mailgate, sink):
    sink.set("RCPT", lambda a: "550 5.1.1 no such user here" if a == "nobody@a.example"
             else None)
    s = sink_server(mailgate, sink)
    mark = s.log_mark()
    mid = send(s, sender="orig@back.example", rcpts=["good@a.example", "nobody@a.example"])
    s.wait_log(r"Info: Bounced: DCID \d+ MID %d to RID \[1\] - 5\.1\.1 - Unknown address "
               r"error \('550', \['5\.1\.1 no such user here'\]\)$" % mid, mark)
    m = s.wait_log(r"Info: MID (\d+) was generated for bounce of MID %d$" % mid, mark)
    dsn_mid = int(m.group(1))
    assert dsn_mid > mid
    finished(s, mid, mark)
    finished(s, dsn_mid, mark)
    msgs = sink.wait_messages(2, WAIT)
    assert msgs[0].rcpts == ["good@a.example"]
    dsn = msgs[1]
    assert dsn.sender == "" and dsn.rcpts == ["orig@back.example"], dsn
    # made here, not received: no Received: header of ours
    msg = parse(dsn.data)
    assert msg["Received"] is None
    assert msg["Message-ID"].startswith("<bounce.%d." % mid)
    assert msg["From"] == "Mail Delivery System <MAILER-DAEMON@%s>" % HOSTNAME
    assert msg["To"] == "<orig@back.example>"
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = msg.get_payload()
    assert [p.get_content_type() for p in parts] == \
        ["text/plain", "message/delivery-status", "text/rfc822-headers"], parts
    report = parts[1].as_string()
    assert "Final-Recipient: rfc822; nobody@a.example" in report, report
    assert "Action: failed" in report and "Status: 5.1.1" in report, report
    assert re.search(r"Diagnostic-Code: smtp; 550 5\.1\.1 no such user here", report), report
    assert "good@a.example" not in report
    headers = parts[2].get_payload()
    assert "Subject: to the sink" in headers and "Message-ID: <sink@test.example>" in headers
    assert "first line" not in headers          # headers only, not the body
    log = s.log_since(mark)
    assert re.search(r"Info: Message done DCID \d+ MID %d to RID \[0\]$" % dsn_mid, log, re.M)


def test_no_dsn_for_a_null_sender(mailgate, sink):
    sink.set("RCPT", "550 5.1.1 no such user here")
    s = sink_server(mailgate, sink)
    mark = s.log_mark()
    mid = send(s, sender="", rcpts=["nobody@a.example"])
    s.wait_log(r"Info: Bounced: DCID \d+ MID %d to RID \[0\] - 5\.1\.1 - " % mid, mark)
    # the DSN would be committed before the bounce is recorded, so by the
    # time the message is finished it would be in the log and the queue
    finished(s, mid, mark)
    assert "was generated for bounce" not in s.log_since(mark)
    assert s.queue_mids() == []
    assert sink.messages == []


# ------------------------------------------------------------------ failures on the way

def test_hanging_sink_is_timed_out_then_retried(mailgate, sink):
    sink.set("DOT", [HANG, None])
    s = sink_server(mailgate, sink, env={"MAILGATE_TEST_MTA_TIMEOUT_MS": TIMEOUT_MS})
    mark = s.log_mark()
    mid = send(s, rcpts=["slow@a.example"])
    s.wait_log(r"Info: Delayed: DCID (\d+) MID %d to RID \[0\] - 4\.4\.2 - Other network "
               r"problem \('000', \['conversation with 127\.0\.0\.1 port %d timed out while "
               r"waiting for the reply to the end of data'\]\)$" % (mid, sink.port), mark)
    msgs = sink.wait_messages(1, WAIT)
    finished(s, mid, mark)
    assert split_received(msgs[0].data)[1] == BODY
    log = s.log_since(mark)
    first = dcids(log, mid)[0]
    assert re.search(r"Info: DCID %d close$" % first, log, re.M), log


def test_silent_greeting_is_timed_out(mailgate, sink):
    sink.set("GREETING", [HANG, None])
    s = sink_server(mailgate, sink, env={"MAILGATE_TEST_MTA_TIMEOUT_MS": TIMEOUT_MS})
    mark = s.log_mark()
    mid = send(s, rcpts=["slow@a.example"])
    s.wait_log(r"Info: Delayed: DCID \d+ MID %d to RID \[0\] - 4\.4\.2 - .*timed out while "
               r"waiting for the greeting'\]\)$" % mid, mark)
    sink.wait_messages(1, WAIT)
    finished(s, mid, mark)


def test_drop_mid_data_is_retried(mailgate, sink):
    sink.set("BODY", [DROP, None])
    s = sink_server(mailgate, sink)
    mark = s.log_mark()
    big = BODY * 20                     # a few MB: the cut falls inside the message
    mid = send(s, rcpts=["cut@a.example"], body=big)
    s.wait_log(r"Info: Delayed: DCID \d+ MID %d to RID \[0\] - 4\.4\.2 - Other network "
               r"problem \('000', \['lost connection with 127\.0\.0\.1 port %d while "
               r"sending the message.*'\]\)$" % (mid, sink.port), mark)
    msgs = sink.wait_messages(1, WAIT)
    finished(s, mid, mark)
    assert len(msgs) == 1
    assert split_received(msgs[0].data)[1] == big
    assert sink.counts["BODY"] == 2


def test_kill9_while_the_sink_holds_a_delivery(mailgate, sink):
    sink.set("DOT", HANG)
    s = sink_server(mailgate, sink)
    c = s.connect()
    c.ehlo()
    mids = []
    for i in range(6):
        body = b"Subject: crash %d\r\n\r\nmessage number %d\r\n" % (i, i)
        mids.append(c.send_message(rcpts=["crash%d@a.example" % i], body=body))
    c.quit()
    # every message has gone over the wire and waits for the sink's answer
    sink.wait_count("DOT", len(mids), WAIT)
    s.kill()
    sink.wait_closed(len(mids), WAIT)
    assert sink.messages == []
    sink.set("DOT", None)
    s.start()
    for mid in mids:
        poll_until(lambda: gone(s, mid), WAIT, what="MID %d to leave the queue" % mid)
    for i in range(6):
        n = sum(1 for m in sink.messages if m.data.endswith(b"\r\nmessage number %d\r\n" % i))
        assert n == 1, "message %d delivered %d times: %r" % (i, n, sink.messages)


def test_sigterm_during_a_delivery(mailgate, sink):
    """A stop cuts the outbound connection (logged before the last line) and
    the message is delivered after the restart."""
    sink.set("DOT", [HANG, None])
    s = sink_server(mailgate, sink)
    mark = s.log_mark()
    mid = send(s, rcpts=["stop@a.example"])
    sink.wait_count("DOT", 1, WAIT)
    s.stop()
    log = s.log_since(mark)
    d = dcids(log, mid)
    assert len(d) == 1, log
    close = re.search(r"^.* Info: DCID %d close$" % d[0], log, re.M)
    stopped = re.search(r"^.* Info: mailgate stopped$", log, re.M)
    assert close and stopped and close.start() < stopped.start(), log
    assert "Message done" not in log
    s.start()
    finished(s, mid, mark)
    assert len(sink.messages) == 1
    assert split_received(sink.messages[0].data)[1] == BODY


# ------------------------------------------------------------------ the client's side of ESMTP

def test_starttls_opportunistic(mailgate, tmp_path):
    cert = make_cert(tmp_path / "certs", "sink", cn="sink.test.example")
    with SmtpSink(tls=(cert.certificate, cert.key)) as tsink:
        s = sink_server(mailgate, tsink)
        mark = s.log_mark()
        mid = send(s, rcpts=["secret@a.example"])
        msgs = tsink.wait_messages(1, WAIT)
        finished(s, mid, mark)
        # a self-signed certificate: not verified by default, used all the same
        assert msgs[0].tls in ("TLSv1.2", "TLSv1.3"), msgs
        assert split_received(msgs[0].data)[1] == BODY
        d = dcids(s.log_since(mark), mid)[0]
        s.assert_log(r"Info: DCID %d TLS success protocol TLSv1\.[23] cipher \S+$" % d, mark)


def test_starttls_failure_falls_back_to_plain(mailgate, tmp_path):
    cert = make_cert(tmp_path / "certs", "sink", cn="sink.test.example")
    with SmtpSink({"HANDSHAKE": [BADTLS, None]}, tls=(cert.certificate, cert.key)) as tsink:
        s = sink_server(mailgate, tsink)
        mark = s.log_mark()
        mid = send(s, rcpts=["plain@a.example"])
        msgs = tsink.wait_messages(1, WAIT)
        finished(s, mid, mark)
        assert msgs[0].tls is None, msgs
        assert split_received(msgs[0].data)[1] == BODY
        s.assert_log(r"Info: DCID \d+ TLS failed: .+$", mark)
        assert "Delayed:" not in s.log_since(mark)


def test_helo_when_ehlo_is_refused_and_size_when_offered(mailgate, sink):
    sink.set("EHLO", ["502 5.5.2 what is EHLO", None])
    s = sink_server(mailgate, sink)
    mark = s.log_mark()
    mid = send(s, rcpts=["old@a.example"])
    finished(s, mid, mark)
    assert sink.counts["HELO"] == 1
    first = sink.messages[0]
    # HELO: no extension, so no SIZE parameter
    assert first.params == "", first.params
    assert split_received(first.data)[1] == BODY
    # once that connection is closed (idle), the next one says EHLO again and uses
    # SIZE (RFC 1870) with the exact size
    s.wait_log(r"Info: DCID %d close$" % dcids(s.log_since(mark), mid)[0], mark)
    mid = send(s, rcpts=["new@a.example"])
    finished(s, mid, mark)
    second = sink.messages[1]
    assert second.conn == 2 and sink.counts["EHLO"] == 2
    assert re.search(r"(^| )SIZE=%d( |$)" % len(second.data), second.params), \
        (second.params, len(second.data))


def test_8bitmime_passed_on(mailgate, sink):
    s = sink_server(mailgate, sink)
    mark = s.log_mark()
    body = "Subject: caf\u00e9\r\n\r\nna\u00efve \u00fcber \u2603\r\n".encode("utf-8")
    c = s.connect()
    c.ehlo()
    c.mail("sender@back.example", params="BODY=8BITMIME")
    c.rcpt("eight@a.example")
    rep = c.data(body + b".\r\n")
    assert rep.code == 250 and rep.mid is not None, rep
    c.quit()
    finished(s, rep.mid, mark)
    m = sink.messages[0]
    assert "BODY=8BITMIME" in m.params.split(), m.params
    assert split_received(m.data)[1] == body


@pytest.mark.parametrize("step,reply,outcome", [
    ("GREETING", "421 4.3.2 too busy", "Delayed"),
    ("GREETING", "554 5.7.1 go away", "Bounced"),
    ("EHLO", "421 4.3.2 shutting down", "Delayed"),
    ("MAIL", "451 4.3.0 sender check failed", "Delayed"),
    ("MAIL", "553 5.7.1 sender refused", "Bounced"),
    ("DATA", "554 5.6.0 no data today", "Bounced"),
    ("DOT", "452 4.3.1 insufficient storage", "Delayed"),
    ("DOT", "552 5.3.4 message too big for me", "Bounced"),
    ("DOT", "250-2.0.0 first line\n250 2.0.0 queued", "done"),
])
def test_reply_at_each_step(mailgate, sink, step, reply, outcome):
    sink.set(step, reply)
    s = sink_server(mailgate, sink, delivery={"retry_initial": "1h", "retry_max": "1h"})
    mark = s.log_mark()
    mid = send(s, sender="", rcpts=["x@a.example", "y@a.example"])
    code, text = reply.split("\n")[-1][:3], reply.split("\n")[-1][4:]
    if outcome == "done":
        finished(s, mid, mark)
        assert [m.rcpts for m in sink.messages] == [["x@a.example", "y@a.example"]]
        return
    for rid in (0, 1):
        s.wait_log(r"Info: %s: DCID \d+ MID %d to RID \[%d\] - %s\.\d+\.\d+ - .* \('%s', \['%s'\]\)$"
                   % (outcome, mid, rid, code[0], code, re.escape(text)), mark)
    if outcome == "Bounced":
        finished(s, mid, mark)       # a null sender: no DSN
    else:
        poll_until(lambda: mid in s.queue_mids() and
                   (s.spool / "state" / str(mid)).exists(), WAIT, what="deferred on disk")
    assert sink.messages == []


def test_kill9_while_mail_flows(mailgate, sink):
    """Killed while a client still sends and deliveries are in every stage:
    after the restart every acknowledged message arrives at least once (a copy
    the sink took but the server had not yet recorded comes again)."""
    s = sink_server(mailgate, sink)
    acked = {}                      # i -> MID, for each 250 the client got
    stop = threading.Event()

    def client():
        i = 0
        try:
            while not stop.is_set() and i < 200:
                c = Client(s.host, s.port, 15.0)
                c.banner()
                c.ehlo()
                for _ in range(10):          # max_messages_per_connection
                    body = b"Subject: flow %d\r\n\r\nflowing message %d\r\n" % (i, i)
                    acked[i] = c.send_message(rcpts=["f%d@a.example" % i, "g%d@b.example" % i],
                                              body=body)
                    i += 1
                c.quit()
        except (AssertionError, OSError):
            pass                             # the server went away mid-conversation

    t = threading.Thread(target=client, daemon=True)
    t.start()
    sink.wait_messages(20, WAIT)
    s.kill()
    stop.set()
    t.join(WAIT)
    assert not t.is_alive()
    assert len(acked) >= 10, acked
    s.start()
    for i, mid in sorted(acked.items()):
        poll_until(lambda: gone(s, mid), WAIT, what="MID %d to leave the queue" % mid)
    for i in acked:
        for rcpt in ("f%d@a.example" % i, "g%d@b.example" % i):
            got = [m for m in sink.messages if rcpt in m.rcpts]
            assert got, "%s (MID %d) never delivered" % (rcpt, acked[i])
            assert all(m.data.endswith(b"\r\nflowing message %d\r\n" % i) for m in got)


# ------------------------------------------------------------------ connection limits

@pytest.mark.parametrize("limit", ["max_connections_per_destination", "max_connections"])
def test_connection_limit(mailgate, sink, limit):
    """With the limit at 1, one connection at a time, whatever waits; each
    message still goes out once the one ahead is done."""
    sink.set("DOT", [HANG, None])
    s = sink_server(mailgate, sink, delivery=dict(FAST, **{limit: 1}))
    mark = s.log_mark()
    doms = ["a.example"] * 3 if limit == "max_connections_per_destination" else \
        ["a.example", "b.example", "c.example"]
    mids = [send(s, rcpts=["u%d@%s" % (i, d)]) for i, d in enumerate(doms)]
    sink.wait_count("DOT", 1, WAIT)
    # everything is committed and the first delivery hangs: the rest wait their turn
    d = poll_until(lambda: (lambda d: d["messages"] == 3 and d)(
        json.loads(s.cli("status", "--json").stdout)["delivery"]), WAIT, what="3 messages")
    assert d["batches_in_flight"] == 1, d
    sink.release()
    for mid in mids:
        finished(s, mid, mark)
    assert sink.max_open == 1, sink.max_open
    assert sorted(r for m in sink.messages for r in m.rcpts) == \
        sorted("u%d@%s" % (i, d) for i, d in enumerate(doms))
