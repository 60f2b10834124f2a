"""PIPELINING (RFC 2920): groups answered in order and in one flush, whole
transactions after the final dot, and the synchronization errors."""

import re

import pytest

from conftest import HOSTNAME

ACCEPTED = re.compile(r"ok: Message \d+ accepted")


@pytest.fixture(scope="module")
def srv(mailgate_module):
    return mailgate_module(policy={"max_messages_per_connection": 0})


def test_group_answered_in_order(srv):
    c = srv.connect()
    c.ehlo()
    c.send(b"MAIL FROM:<a@test.example>\r\nRCPT TO:<b@test.example>\r\n"
           b"RCPT TO:<c@test.example>\r\nDATA\r\n")
    c.expect(250, "sender <a@test.example> ok")
    c.expect(250, "recipient <b@test.example> ok")
    c.expect(250, "recipient <c@test.example> ok")
    c.expect(354, "go ahead")
    c.send(b"Subject: piped\r\n\r\nbody\r\n.\r\n")
    r = c.expect(250, ACCEPTED)
    c.quit()
    sf = srv.spool_file(r.mid)
    assert sf.rcpts == [(0, "<b@test.example>"), (1, "<c@test.example>")]
    assert sf.body == b"Subject: piped\r\n\r\nbody\r\n"


def test_group_replies_in_one_flush(srv):
    """The whole group's replies are written at once: the first read after the
    group holds all four of them."""
    c = srv.connect()
    c.ehlo()
    c.send(b"MAIL FROM:<a@test.example>\r\nRCPT TO:<b@test.example>\r\n"
           b"RCPT TO:<c@test.example>\r\nDATA\r\n")
    first = c.read_some()
    assert first == (b"250 sender <a@test.example> ok\r\n"
                     b"250 recipient <b@test.example> ok\r\n"
                     b"250 recipient <c@test.example> ok\r\n"
                     b"354 go ahead\r\n"), \
        "replies to one pipelined group did not come in one write: first read %r" % first
    c.send(b"x\r\n.\r\n")
    c.expect(250, ACCEPTED)
    c.quit()


def test_group_with_errors_in_the_middle(srv):
    c = srv.connect()
    c.ehlo()
    mark = srv.log_mark()
    c.send(b"MAIL FROM:<a@test.example>\r\nRCPT TO:<broken\r\nRCPT TO:<c@test.example>\r\n"
           b"NOOP\r\nRSET\r\nMAIL FROM:<d@test.example>\r\nRCPT TO:<e@test.example>\r\nDATA\r\n")
    c.expect(250, "sender <a@test.example> ok")
    r = c.reply()
    assert r.code == 501 and r.text.startswith("#5.5.2 syntax error"), r
    c.expect(250, "recipient <c@test.example> ok")
    c.expect(250, "ok")
    c.expect(250, "ok")
    c.expect(250, "sender <d@test.example> ok")
    c.expect(250, "recipient <e@test.example> ok")
    c.expect(354, "go ahead")
    c.send(b"Subject: after rset\r\n\r\nx\r\n.\r\n")
    r = c.expect(250, ACCEPTED)
    srv.assert_failed_logged(c, mark, count=1)
    c.quit()
    sf = srv.spool_file(r.mid)
    assert sf.field("sender") == "<d@test.example>"
    assert sf.rcpts == [(0, "<e@test.example>")]


def test_group_without_valid_recipient_gets_no_354(srv):
    c = srv.connect()
    c.ehlo()
    c.send(b"MAIL FROM:<a@test.example>\r\nRCPT TO:<bad@@x>\r\nDATA\r\n")
    c.expect(250)
    assert c.reply().code == 501
    c.expect(503, "#5.5.1 RCPT first")
    c.cmd("NOOP", 250, "ok")           # still in command mode: no message is being read
    c.quit()


def test_many_rcpts_in_one_group(srv):
    c = srv.connect()
    c.ehlo()
    n = 40
    c.send(b"MAIL FROM:<a@test.example>\r\n" +
           b"".join(b"RCPT TO:<r%d@test.example>\r\n" % i for i in range(n)) + b"DATA\r\n")
    c.expect(250)
    for i in range(n):
        c.expect(250, "recipient <r%d@test.example> ok" % i)
    c.expect(354)
    c.send(b"x\r\n.\r\n")
    r = c.expect(250, ACCEPTED)
    c.quit()
    assert [a for _, a in srv.spool_file(r.mid).rcpts] == ["<r%d@test.example>" % i
                                                          for i in range(n)]


def test_transactions_pipelined_after_final_dot(srv):
    """RFC 2920: the client may send the next MAIL/RCPT/DATA right after <CRLF>.<CRLF>."""
    c = srv.connect()
    c.ehlo()
    c.send(b"MAIL FROM:<s0@test.example>\r\nRCPT TO:<r0@test.example>\r\nDATA\r\n")
    c.expect(250)
    c.expect(250)
    c.expect(354)
    mids = []
    n = 5
    for i in range(n):
        body = b"Subject: piped %d\r\n\r\nmessage %d\r\n" % (i, i)
        if i < n - 1:
            c.send(body + b".\r\nMAIL FROM:<s%d@test.example>\r\nRCPT TO:<r%d@test.example>\r\n"
                   b"DATA\r\n" % (i + 1, i + 1))
            mids.append(c.expect(250, ACCEPTED).mid)
            c.expect(250, "sender <s%d@test.example> ok" % (i + 1))
            c.expect(250, "recipient <r%d@test.example> ok" % (i + 1))
            c.expect(354, "go ahead")
        else:
            c.send(body + b".\r\nQUIT\r\n")
            mids.append(c.expect(250, ACCEPTED).mid)
            c.expect(221, HOSTNAME)
            c.expect_closed()
    assert all(a < b for a, b in zip(mids, mids[1:])), mids
    for i, m in enumerate(mids):
        sf = srv.spool_file(m)
        assert sf.field("sender") == "<s%d@test.example>" % i
        assert sf.body == b"Subject: piped %d\r\n\r\nmessage %d\r\n" % (i, i)


def test_whole_session_in_few_writes(srv):
    """EHLO ends a group; after it a client may pipeline everything up to DATA."""
    c = srv.connect()
    c.send(b"EHLO piped.example\r\n")
    c.expect(250)
    c.send(b"RSET\r\nMAIL FROM:<a@test.example>\r\nRCPT TO:<b@test.example>\r\nDATA\r\n")
    c.expect(250, "ok")
    c.expect(250)
    c.expect(250)
    c.expect(354)
    c.send(b"x\r\n.\r\nRSET\r\nNOOP\r\nQUIT\r\n")
    c.expect(250, ACCEPTED)
    c.expect(250, "ok")
    c.expect(250, "ok")
    c.expect(221)
    c.expect_closed()


def test_nothing_answered_after_quit(srv):
    c = srv.connect()
    c.send(b"QUIT\r\nNOOP\r\nNOOP\r\n")
    c.expect(221, HOSTNAME)
    c.expect_closed()


# ------------------------------------------------------------------ synchronization errors

def test_text_in_same_write_as_data_is_sync_error(srv):
    before = srv.queue_names()
    c = srv.connect()
    c.ehlo()
    mark = srv.log_mark()
    c.send(b"MAIL FROM:<a@test.example>\r\nRCPT TO:<b@test.example>\r\nDATA\r\n"
           b"Subject: too early\r\n\r\nbody\r\n.\r\n")
    c.expect(250, "sender <a@test.example> ok")
    c.expect(250, "recipient <b@test.example> ok")
    c.expect(554, "SMTP synchronization error")
    c.expect_closed()
    srv.assert_failed_logged(c, mark)
    srv.wait_closed_logged(c, mark)
    assert srv.queue_names() == before
    assert srv.tmp_settled() == []
    srv.assert_serving()


def test_data_alone_then_text_before_354_one_write(srv):
    """Only DATA and the text in the write: still a synchronization error."""
    c = srv.connect()
    c.ehlo()
    c.mail("a@test.example")
    c.rcpt("b@test.example")
    mark = srv.log_mark()
    c.send(b"DATA\r\nSubject: x\r\n\r\nsmuggled?\r\n.\r\nMAIL FROM:<evil@test.example>\r\n")
    c.expect(554, "SMTP synchronization error")
    c.expect_closed()
    srv.assert_failed_logged(c, mark)
    assert "evil@test.example" not in srv.log_since(mark)
    srv.assert_serving()


def test_early_talker_before_banner(mailgate):
    s = mailgate(policy={"greet_delay": "1s"})
    mark = s.log_mark()
    c = s.raw_connect()
    c.send(b"EHLO early.example\r\n")
    r = c.reply()
    assert r.raw == b"554 SMTP synchronization error\r\n", \
        "expected the early talker to get 554 instead of the banner, got %r" % r.raw
    c.expect_closed()
    s.assert_failed_logged(None, mark)
    # a patient client is served normally
    c2 = s.connect()
    c2.ehlo()
    c2.send_message()
    c2.quit()
