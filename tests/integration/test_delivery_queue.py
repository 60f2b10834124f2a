"""The operator's view of delivery (issue 6), against a running server that
delivers to the sink of smtpsink.py: every `queue` subcommand (list, list
--json, show, hold, release, deliver, delete, bounce), the delivery counters of
`status` moving as mail flows, and `tophosts` (spec/cli.md): recipient hosts by
active recipients, connections out, delivered, soft and hard bounced."""

import json
import re

import pytest

from conftest import check_cli_sanitizers, poll_until
from smtpsink import HANG, SmtpSink
from test_delivery_local import gone, ok, out, states

WAIT = 30


def reply_for(rcpt):
    """ok.example takes everything, defer.example says 451, bad.example 550."""
    dom = rcpt.rpartition("@")[2].lower()
    if dom == "defer.example":
        return "451 4.2.2 mailbox full, try later"
    if dom == "bad.example":
        return "550 5.1.1 no such user"
    return None


@pytest.fixture
def sink():
    s = SmtpSink({"RCPT": reply_for}).start()
    yield s
    s.stop()


@pytest.fixture
def srv(mailgate, sink):
    # retries an hour away: what is deferred stays so until an operator acts
    return mailgate(top={"routes": [{"domain": "ALL", "to": [sink.route]}],
                         "delivery": {"retry_initial": "1h", "retry_max": "1h"}})


def send(s, rcpts, sender="sender@back.example", subject="queue test"):
    c = s.connect()
    c.ehlo()
    mid = c.send_message(sender=sender, rcpts=rcpts,
                         body=b"Subject: %s\r\n\r\nhello\r\n" % subject.encode())
    c.quit()
    return mid


def status(s):
    r = s.cli("status", "--json")
    assert ok(r), out(r)
    return json.loads(r.stdout)


def tophosts(s, *args):
    r = s.cli("tophosts", "--json", *args)
    assert ok(r), out(r)
    return {h["host"]: h for h in json.loads(r.stdout)["hosts"]}


def delivery(s):
    return status(s)["delivery"]


# ------------------------------------------------------------------ status and tophosts

def test_status_counters_move(srv, sink):
    d0 = delivery(srv)
    assert d0["delivered"] == 0 and d0["bounced"] == 0 and d0["deferred"] == 0, d0
    assert d0["messages"] == 0 and d0["recipients_pending"] == 0, d0
    assert d0["messages_received"] == 0 and d0["dsns_generated"] == 0, d0

    mids = [send(srv, ["a%d@ok.example" % i, "b%d@ok.example" % i]) for i in range(3)]
    for mid in mids:
        poll_until(lambda: gone(srv, mid), WAIT, what="MID %d delivered" % mid)
    d = poll_until(lambda: (lambda d: d["delivered"] == 6 and d)(delivery(srv)), WAIT,
                   what="status to count 6 delivered recipients")
    assert d["bounced"] == 0 and d["deferred"] == 0 and d["messages"] == 0, d
    assert d["messages_received"] == 3 and d["recipients_received"] == 6, d
    assert d["dsns_generated"] == 0, d
    # a young server's rates are over its life so far: above zero once mail came
    rates = status(srv)["rates_per_minute"]
    assert rates["windows"] == [1, 5, 15], rates
    for key in ("messages_received", "recipients_received", "recipients_delivered"):
        assert len(rates[key]) == 3 and all(x > 0 for x in rates[key]), rates
    assert rates["recipients_bounced"] == [0, 0, 0], rates

    mid = send(srv, ["x@defer.example", "y@bad.example"])
    # the 550 bounces (and its DSN to back.example is delivered), the 451 waits
    d = poll_until(lambda: (lambda d: d["deferred"] == 1 and d["bounced"] == 1 and
                            d["delivered"] == 7 and d)(delivery(srv)), WAIT,
                   what="1 deferred, 1 bounced, 7 delivered (the DSN)")
    assert d["messages"] == 1 and d["recipients_pending"] == 1, d
    assert d["messages_received"] == 4 and d["recipients_received"] == 8, d
    assert d["dsns_generated"] == 1, d
    st = status(srv)
    assert st["queue"]["messages"] == 1, st
    # the text form shows the same counters
    r = srv.cli("status")
    assert ok(r), out(r)
    text = r.stdout.decode()
    assert re.search(r"^delivery:$", text, re.M), text
    assert re.search(r"^  delivered: +7$", text, re.M), text
    assert re.search(r"^  bounced: +1$", text, re.M), text
    assert re.search(r"^rates_per_minute:\n  windows: +1, 5, 15$", text, re.M), text
    assert re.search(r"^  recipients_bounced: +[0-9.]+, [0-9.]+, [0-9.]+$", text, re.M), text
    assert mid in srv.queue_mids()


def test_tophosts(srv, sink):
    assert tophosts(srv) == {}
    r = srv.cli("tophosts")
    assert ok(r), out(r)
    assert b"(no recipient host yet)" in r.stdout, out(r)

    mid = send(srv, ["a@ok.example", "b@ok.example", "c@defer.example", "d@bad.example",
                     "e@defer.example"])
    poll_until(lambda: states(srv, mid) is not None and
               sorted(states(srv, mid)) == ["bounced", "deferred", "deferred", "delivered",
                                            "delivered"]
               or None, WAIT, what="MID %d's recipients to settle" % mid)
    hosts = poll_until(lambda: (lambda h: "back.example" in h and h)(tophosts(srv)), WAIT,
                       what="the DSN's delivery to back.example counted")
    assert hosts["ok.example"]["delivered"] == 2, hosts
    assert hosts["ok.example"]["active_recipients"] == 0, hosts
    assert hosts["defer.example"]["active_recipients"] == 2, hosts
    assert hosts["defer.example"]["soft_bounced"] == 2, hosts
    assert hosts["defer.example"]["delivered"] == 0, hosts
    assert hosts["bad.example"]["hard_bounced"] == 1, hosts
    assert hosts["back.example"]["delivered"] == 1, hosts

    # sorted by the column asked for, ties by name
    r = srv.cli("tophosts", "--json", "delivered")
    assert ok(r), out(r)
    rows = json.loads(r.stdout)["hosts"]
    assert [h["host"] for h in rows] == ["ok.example", "back.example", "bad.example",
                                         "defer.example"], rows
    r = srv.cli("tophosts")
    assert ok(r), out(r)
    text = r.stdout.decode()
    assert re.search(r"#\s+Recipient Host\s+Recip\.\s+Out\s+Recip\.\s+Bounced\s+Bounced", text)
    assert re.search(r"^1\s+defer\.example\s+2\s+0\s+0\s+2\s+0$", text, re.M), text
    assert re.search(r"^\d\s+ok\.example\s+0\s+0\s+2\s+0\s+0$", text, re.M), text

    for bad in (["nosuchcolumn"], ["active", "hard"], ["--bogus"]):
        r = srv.cli("tophosts", *bad)
        check_cli_sanitizers(r)
        assert r.returncode == 2 and b"usage" in r.stderr, out(r)


def test_connections_out(srv, sink):
    sink.set("DOT", HANG)
    send(srv, ["held@slow.example"])
    sink.wait_count("DOT", 1, WAIT)
    hosts = poll_until(lambda: (lambda h: h.get("slow.example", {}).get("connections_out")
                                and h)(tophosts(srv, "connections")), WAIT,
                       what="a connection out to slow.example")
    assert hosts["slow.example"]["connections_out"] == 1, hosts
    assert hosts["slow.example"]["active_recipients"] == 1, hosts
    assert delivery(srv)["connections_out"] == 1
    assert delivery(srv)["batches_in_flight"] == 1
    sink.set("DOT", None)
    sink.release()
    poll_until(lambda: delivery(srv)["deferred"] == 1, WAIT, what="the cut delivery deferred")


# ------------------------------------------------------------------ queue subcommands

def test_every_queue_subcommand(srv, sink):
    m1 = send(srv, ["one@defer.example", "two@ok.example"], subject="first")
    m2 = send(srv, ["three@defer.example"], subject="second")
    poll_until(lambda: states(srv, m1) == ["deferred", "delivered"] and
               states(srv, m2) == ["deferred"], WAIT, what="both deferred at the 451")

    # list, list --json
    r = srv.cli("queue", "list")
    assert ok(r), out(r)
    text = r.stdout.decode()
    assert re.search(r"\b%d\b.*one@defer\.example \(deferred\), two@ok\.example \(delivered\)"
                     % m1, text), text
    assert re.search(r"\b%d\b.*three@defer\.example \(deferred\)" % m2, text), text
    listing = {m["mid"]: m for m in srv.queue_list_json()}
    assert set(listing) == {m1, m2}, listing
    assert listing[m1]["sender"] == "sender@back.example"
    assert [(x["rid"], x["address"], x["state"]) for x in listing[m1]["recipients"]] == \
        [(0, "one@defer.example", "deferred"), (1, "two@ok.example", "delivered")]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", listing[m1]["arrival"]), listing

    # show: the envelope, the attempts and the server's last answer, the headers
    r = srv.cli("queue", "show", str(m1))
    assert ok(r), out(r)
    assert re.search(rb"0 <one@defer\.example> deferred, 1 attempt, next ", r.stdout), out(r)
    assert re.search(rb"last error: 451 4\.2\.2 mailbox full, try later\n", r.stdout), out(r)
    assert b"Subject: first" in r.stdout, out(r)

    # hold: deliver leaves it alone
    r = srv.cli("queue", "hold", str(m1))
    assert ok(r) and r.stdout.decode() == "MID %d held\n" % m1, out(r)
    assert states(srv, m1) == ["held", "delivered"]
    sink.set("RCPT", None)                  # the sink takes everything from now on
    mark = srv.log_mark()
    r = srv.cli("queue", "deliver")
    assert ok(r) and r.stdout == b"1 deferred recipient due now\n", out(r)
    poll_until(lambda: gone(srv, m2), WAIT, what="MID %d delivered" % m2)
    assert "MID %d " % m1 not in srv.log_since(mark)
    assert [m.rcpts for m in sink.messages if m.rcpts == ["three@defer.example"]]

    # release, then deliver one domain: delivered now
    r = srv.cli("queue", "release", str(m1))
    assert ok(r) and r.stdout.decode() == "MID %d released\n" % m1, out(r)
    assert states(srv, m1) == ["deferred", "delivered"]
    r = srv.cli("queue", "deliver", "defer.example")
    assert ok(r) and r.stdout == b"1 deferred recipient due now for defer.example\n", out(r)
    poll_until(lambda: gone(srv, m1), WAIT, what="MID %d delivered" % m1)
    assert ["one@defer.example"] in [m.rcpts for m in sink.messages]

    # delete and bounce: of messages still waiting
    sink.set("RCPT", reply_for)
    m3 = send(srv, ["four@defer.example"], subject="third")
    m4 = send(srv, ["five@defer.example"], subject="fourth")
    poll_until(lambda: states(srv, m3) == ["deferred"] and states(srv, m4) == ["deferred"],
               WAIT, what="both deferred")
    mark = srv.log_mark()
    r = srv.cli("queue", "delete", str(m3))
    assert ok(r) and r.stdout.decode() == "MID %d deleted\n" % m3, out(r)
    poll_until(lambda: gone(srv, m3), WAIT, what="MID %d deleted" % m3)
    srv.assert_log(r"Info: Message aborted MID %d deleted by operator$" % m3, mark)
    r = srv.cli("queue", "bounce", str(m4))
    assert ok(r) and r.stdout.decode() == "MID %d bounced\n" % m4, out(r)
    m = srv.wait_log(r"Info: MID (\d+) was generated for bounce of MID %d$" % m4, mark)
    dsn = int(m.group(1))
    poll_until(lambda: gone(srv, m4) and gone(srv, dsn), WAIT, what="the bounce and its DSN")
    got = sink.wait(lambda: [x for x in sink.messages if x.sender == "" and
                             x.rcpts == ["sender@back.example"]], WAIT, "the DSN at the sink")
    assert b"five@defer.example" in got[-1].data and b"Subject: fourth" in got[-1].data
    assert srv.queue_mids() == []
    # and none of it reached the sink for the deleted one
    assert not [x for x in sink.messages if "four@defer.example" in x.rcpts]


def test_tophosts_needs_the_server(mailgate):
    s = mailgate(start=False)
    r = s.cli("tophosts")
    check_cli_sanitizers(r)
    assert r.returncode == 2, out(r)
    assert b"no mailgate server is running" in r.stderr and r.stdout == b"", out(r)
