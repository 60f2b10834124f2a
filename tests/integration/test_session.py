"""The ordinary SMTP session: the reference transcript byte for byte, real clients
(smtplib, swaks), and every ordinary reply."""

import re
import shutil
import smtplib
import subprocess

import pytest

from conftest import HOSTNAME

H = HOSTNAME


@pytest.fixture(scope="module")
def srv(mailgate_module):
    """A private listener with mail merge off, so HELP has its plain text."""
    return mailgate_module(listener={"ipmm": False})


@pytest.fixture(scope="module")
def srv_mm(mailgate_module):
    """A private listener with the defaults (mail merge on)."""
    return mailgate_module()


# ------------------------------------------------------------------ the reference session

REFERENCE = (
    b"220 <host> ESMTP\r\n"
    b"helo\r\n"
    b"250 <host>\r\n"
    b"mail from: <test@test.com>\r\n"
    b"250 sender <test@test.com> ok\r\n"
    b"rcpt to: <user@other.com>\r\n"
    b"250 recipient <user@other.com> ok\r\n"
    b"data\r\n"
    b"354 go ahead\r\n"
    b"subject: TESTING SMTP\r\n"
    b"This is line one.\r\n"
    b"This is line two.\r\n"
    b".\r\n"
    b"250 ok: Message <mid> accepted\r\n"
    b"quit\r\n"
    b"221 <host>\r\n"
)
REFERENCE_BODY = b"subject: TESTING SMTP\r\nThis is line one.\r\nThis is line two.\r\n"


def test_reference_session_byte_for_byte(srv):
    mark = srv.log_mark()
    c = srv.raw_connect()
    transcript = c.reply().raw
    c.icid = int(re.findall(r"New SMTP ICID (\d+) ", srv.log_since(mark))[-1])
    mid = None
    for line in [b"helo", b"mail from: <test@test.com>", b"rcpt to: <user@other.com>", b"data"]:
        c.line(line)
        transcript += line + b"\r\n" + c.reply().raw
    for line in REFERENCE_BODY.split(b"\r\n")[:-1] + [b"."]:
        c.line(line)
        transcript += line + b"\r\n"
    r = c.reply()
    transcript += r.raw
    mid = r.mid
    c.line(b"quit")
    transcript += b"quit\r\n" + c.reply().raw
    c.expect_closed()
    assert mid is not None, "no MID in %r" % r.raw
    expected = REFERENCE.replace(b"<host>", H.encode()).replace(b"<mid>", str(mid).encode())
    assert transcript == expected

    # the same message in the spool, byte for byte
    sf = srv.spool_file(mid)
    sf.check_envelope_clean()
    assert sf.field("mid") == str(mid)
    assert sf.field("icid") == str(c.icid)
    assert sf.field("listener") == "default"
    assert sf.field("client") == "127.0.0.1"
    assert sf.field("helo") == ""
    assert sf.field("sender") == "<test@test.com>"
    assert sf.rcpts == [(0, "<user@other.com>")]
    assert sf.field("arrival")
    assert sf.body == REFERENCE_BODY
    rcvd = sf.received.decode("ascii", "replace")
    assert "[127.0.0.1]" in rcvd and H in rcvd, rcvd
    assert re.search(r"(?<![\d.])%d(?![\d.])" % mid, rcvd), "MID not in Received: %r" % rcvd
    assert re.search(r"(?<![\d.])%d(?![\d.])" % c.icid, rcvd), "ICID not in Received: %r" % rcvd
    assert sf.received.endswith(b"\r\n") or sf.received.endswith(b"\n")

    # and in the log, in order
    srv.wait_log(r"Info: ICID %d close$" % c.icid, mark)
    texts = srv.log_texts(mark)
    i, ic = 0, c.icid
    wanted = [
        r"New SMTP ICID %d interface default \(127\.0\.0\.1\) address 127\.0\.0\.1 "
        r"reverse dns host unknown verified no" % ic,
        r"ICID %d RELAY SG RELAYLIST match 127\.0\.0\.0/8" % ic,
        r"Start MID %d ICID %d" % (mid, ic),
        r"MID %d ICID %d From: <test@test\.com>" % (mid, ic),
        r"MID %d ICID %d RID 0 To: <user@other\.com>" % (mid, ic),
        r"MID %d ready %d bytes from <test@test\.com>" % (mid, len(REFERENCE_BODY)),
        r"MID %d queued for delivery" % mid,
        r"ICID %d close" % ic,
    ]
    for w in wanted:
        while i < len(texts) and not re.fullmatch(w, texts[i]):
            i += 1
        assert i < len(texts), "log line %r missing or out of order:\n%s" % (w, "\n".join(texts))
    assert "MID %d Subject 'TESTING SMTP'" % mid in texts, texts


def test_connect_log_line_written_before_banner(srv):
    mark = srv.log_mark()
    c = srv.raw_connect()
    c.banner()
    assert re.search(r"Info: New SMTP ICID \d+ interface default ", srv.log_since(mark)), \
        "no 'New SMTP ICID' line by the time the banner arrived"
    c.quit()


def test_received_header_names_helo(srv):
    c = srv.connect()
    c.ehlo("helo-name.client.example")
    mid = c.send_message(body=b"Subject: r\r\n\r\nx\r\n")
    c.quit()
    sf = srv.spool_file(mid)
    assert sf.field("helo") == "helo-name.client.example"
    assert b"helo-name.client.example" in sf.received, sf.received


# ------------------------------------------------------------------ real clients

def test_smtplib_several_recipients(srv):
    before = set(srv.queue_mids())
    msg = (b"From: a@test.example\r\nTo: r1@one.example\r\nSubject: smtplib\r\n\r\n"
           b"line\r\n.leading dot\r\n..two dots\r\nlast\r\n")
    s = smtplib.SMTP(srv.host, srv.port, local_hostname="client.test.example", timeout=30)
    try:
        code, _ = s.ehlo()
        assert code == 250
        assert s.has_extn("pipelining") and s.has_extn("8bitmime")
        assert s.esmtp_features.get("size") == "10485760", s.esmtp_features
        refused = s.sendmail("a@test.example", ["r1@one.example", "r2@two.example",
                                                "r3@three.example"], msg)
        assert refused == {}
        # the same again, reading the final reply ourselves for its MID
        s.mail("a@test.example", ["BODY=8BITMIME"])
        s.rcpt("r4@four.example")
        code, resp = s.data(b"Subject: eight bit\r\n\r\n\xc3\xa9t\xc3\xa9\r\n")
        assert code == 250, resp
        m = re.fullmatch(rb"ok: Message (\d+) accepted", resp)
        assert m, resp
        mid2 = int(m.group(1))
        s.quit()
    finally:
        s.close()
    new = sorted(set(srv.queue_mids()) - before)
    assert len(new) == 2 and new[1] == mid2, new
    sf = srv.spool_file(new[0])
    assert sf.rcpts == [(0, "<r1@one.example>"), (1, "<r2@two.example>"), (2, "<r3@three.example>")]
    assert sf.field("sender") == "<a@test.example>"
    assert sf.body == msg
    sf2 = srv.spool_file(mid2)
    assert sf2.field("body") == "8BITMIME"
    assert sf2.body == b"Subject: eight bit\r\n\r\n\xc3\xa9t\xc3\xa9\r\n"


@pytest.mark.parametrize("extra", [["--pipeline"], [], ["--protocol", "SMTP"]],
                         ids=["pipeline", "esmtp", "helo"])
@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
def test_swaks(srv, extra):
    r = subprocess.run(["swaks", "--server", "%s:%d" % (srv.host, srv.port),
                        "--to", "rcpt@test.example", "--from", "sender@test.example",
                        "--helo", "swaks.client.example", "--header", "Subject: swaks test",
                        "--body", "hello from swaks", "--timeout", "30"] + extra,
                       capture_output=True, timeout=60)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, "swaks exited %d:\n%s\n%s" % (r.returncode, out, r.stderr)
    m = re.search(r"<-+\s+250 ok: Message (\d+) accepted", out)
    assert m, out
    sf = srv.spool_file(int(m.group(1)))
    assert b"Subject: swaks test\r\n" in sf.body
    assert b"\r\n\r\nhello from swaks\r\n" in sf.body, sf.body      # swaks adds blank lines
    assert sf.rcpts == [(0, "<rcpt@test.example>")]


# ------------------------------------------------------------------ ordinary replies

def test_ehlo_reply(srv):
    c = srv.connect()
    r = c.cmd("EHLO client.test.example", 250)
    assert r.raw == ("250-%s\r\n250-8BITMIME\r\n250-SIZE 10485760\r\n250 PIPELINING\r\n"
                     % H).encode()
    c.quit()


def test_ehlo_size_follows_policy(mailgate):
    s = mailgate(policy={"max_message_size": "64K"})
    c = s.connect()
    r = c.cmd("EHLO x.example", 250)
    assert "SIZE 65536" in r.lines, r
    c.quit()


@pytest.mark.parametrize("line", ["HELO", "HELO client.test.example", "HELO [127.0.0.1]"])
def test_helo(srv, line):
    c = srv.connect()
    c.cmd(line, 250, H)
    c.quit()


def test_ehlo_requires_domain(srv):
    c = srv.connect()
    mark = srv.log_mark()
    c.cmd("EHLO", 501, "#5.0.0 EHLO requires domain address")
    srv.assert_failed_logged(c, mark, count=1)
    c.ehlo()
    c.quit()


def test_noop_rset_vrfy(srv):
    c = srv.connect()
    c.cmd("NOOP", 250, "ok")
    c.cmd("RSET", 250, "ok")
    c.cmd("VRFY someone", 252, "Cannot VRFY user, but will accept message and attempt delivery")
    c.cmd("VRFY <someone@test.example>", 252,
          "Cannot VRFY user, but will accept message and attempt delivery")
    c.ehlo()
    c.cmd("NOOP", 250, "ok")
    c.quit()


def test_help_exact(srv):
    c = srv.connect()
    r = c.cmd("HELP", 214)
    assert r.raw == (b"214-The following commands are recognized\r\n"
                     b"214- auth data ehlo helo\r\n"
                     b"214- help mail noop quit\r\n"
                     b"214 rcpt rset vrfy\r\n")
    c.quit()


def test_help_with_mail_merge(srv_mm):
    c = srv_mm.connect()
    r = c.cmd("HELP", 214)
    assert r.lines[0] == "The following commands are recognized"
    words = " ".join(r.lines[1:]).split()
    for w in ["auth", "data", "ehlo", "helo", "help", "mail", "noop", "quit", "rcpt", "rset",
              "vrfy", "xmrg", "xdfn", "xprt"]:
        assert w in words, r
    assert "xmrg xdfn xprt" in r.text, r
    c.quit()


def test_help_bogus(srv):
    c = srv.connect()
    mark = srv.log_mark()
    c.cmd("HELP BOGUS", 501, "Unknown command BOGUS")
    srv.assert_failed_logged(c, mark, count=1)
    c.quit()


def test_mail_rcpt_data_replies(srv):
    c = srv.connect()
    c.ehlo()
    c.cmd("MAIL FROM:<a@test.example>", 250, "sender <a@test.example> ok")
    c.cmd("RCPT TO:<b@test.example>", 250, "recipient <b@test.example> ok")
    c.cmd("RCPT TO:<c@other.example>", 250, "recipient <c@other.example> ok")
    c.cmd("DATA", 354, "go ahead")
    c.send(b"Subject: x\r\n\r\nbody\r\n.\r\n")
    r = c.expect(250, re.compile(r"ok: Message \d+ accepted"))
    c.cmd("MAIL FROM:<>", 250, "sender <> ok")
    c.cmd("RCPT TO:<b@test.example>", 250)
    c.cmd("DATA", 354, "go ahead")
    c.send(b"Subject: bounce\r\n\r\nbody\r\n.\r\n")
    r2 = c.expect(250, re.compile(r"ok: Message \d+ accepted"))
    c.quit()
    assert r2.mid > r.mid
    assert srv.spool_file(r2.mid).field("sender") == "<>"


def test_quit_closes(srv):
    c = srv.connect()
    mark = srv.log_mark()
    c.line("QUIT")
    assert c.reply().raw == ("221 %s\r\n" % H).encode()
    c.expect_closed()
    srv.wait_log(r"Info: ICID %d close$" % c.icid, mark)


def test_rset_clears_transaction(srv):
    c = srv.connect()
    c.ehlo()
    c.mail("a@test.example")
    c.rcpt("b@test.example")
    c.cmd("RSET", 250, "ok")
    c.cmd("DATA", 503, "#5.5.1 MAIL first")
    c.mail("a@test.example")              # no "Nested MAIL": the transaction is gone
    c.cmd("DATA", 503, "#5.5.1 RCPT first")
    c.quit()


@pytest.mark.parametrize("helo,mail,rcpt,data", [
    ("helo x.example", "mail from:<a@test.example>", "rcpt to:<b@test.example>", "data"),
    ("HeLo x.example", "MaIl FrOm:<a@test.example>", "rCpT tO:<b@test.example>", "DaTa"),
    ("ehlo x.example", "mail FROM:<a@test.example>", "RCPT to:<b@test.example>", "data"),
    ("EHLO x.example", "mail from: <a@test.example>", "rcpt to: <b@test.example>", "DATA"),
    ("EhLo x.example", "MAIL FROM: <a@test.example>", "RCPT TO: <b@test.example>", "dAtA"),
], ids=["lower", "mixed", "ehlo-lower", "space-after-colon", "space-upper"])
def test_case_insensitive_and_space_after_colon(srv, helo, mail, rcpt, data):
    c = srv.connect()
    c.cmd(helo, 250)
    c.cmd(mail, 250, "sender <a@test.example> ok")
    c.cmd(rcpt, 250, "recipient <b@test.example> ok")
    c.cmd(data, 354, "go ahead")
    c.send(b"Subject: case\r\n\r\nx\r\n.\r\n")
    r = c.expect(250, re.compile(r"ok: Message \d+ accepted"))
    for verb in ["noop", "NoOp", "rset", "RsEt"]:
        c.cmd(verb, 250, "ok")
    c.cmd("vrfy x", 252)
    c.cmd("quit", 221, H)
    c.expect_closed()
    sf = srv.spool_file(r.mid)
    assert sf.field("sender") == "<a@test.example>"
    assert sf.rcpts == [(0, "<b@test.example>")]


def test_mids_strictly_increasing(srv):
    mids = []
    c1 = srv.connect()
    c2 = srv.connect()
    c1.ehlo()
    c2.ehlo()
    for i in range(4):
        for c in (c1, c2):
            mids.append(c.send_message(body=b"Subject: n%d\r\n\r\nx\r\n" % i))
    c1.quit()
    c3 = srv.connect()
    c3.ehlo()
    mids.append(c3.send_message())
    c3.quit()
    c2.quit()
    assert all(a < b for a, b in zip(mids, mids[1:])), mids
    assert all(m > 0 for m in mids)
    for m in mids:
        srv.spool_file(m)


def test_ready_bytes_counts_unstuffed_octets(srv):
    mark = srv.log_mark()
    c = srv.connect()
    c.ehlo()
    wire = b"Subject: dots\r\n\r\n...one\r\n....two\r\n..\r\n.\r\n"     # dot-stuffed
    c.mail("a@test.example")
    c.rcpt("b@test.example")
    r = c.data(wire)
    assert r.code == 250, r
    c.quit()
    stored = b"Subject: dots\r\n\r\n..one\r\n...two\r\n.\r\n"
    assert srv.spool_file(r.mid).body == stored
    srv.assert_log(r"Info: MID %d ready %d bytes from <a@test\.example>$" % (r.mid, len(stored)),
                   mark)
    srv.assert_log(r"Info: MID %d Subject 'dots'$" % r.mid, mark)


def test_message_id_logged(srv):
    mark = srv.log_mark()
    c = srv.connect()
    c.ehlo()
    mid = c.send_message(body=b"Message-ID: <abc.123@client.example>\r\nSubject: mid\r\n\r\nx\r\n")
    c.quit()
    srv.assert_log(r"Info: MID %d Message-ID '<abc\.123@client\.example>'$" % mid, mark)
