"""Mail merge (XMRG, XDFN, XPRT): the example of the reference end to end, byte for
byte, through a maildir route and through a small SMTP sink on 127.0.0.1; every
mail merge reply under its condition; XDFN line lengths and NUL; XLSMTP-ACKRCPT OFF
with pipelined RCPTs; substitution and *PARTS; hostile part data; kill -9 after the
final 250 with every recipient's message still delivered after the restart."""

import re
import socket
import threading

import pytest

from conftest import DEAD_ROUTE, HOSTNAME, poll_until, stuff

WAIT = 30
H = HOSTNAME


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


def merge_server(mailgate, tmp_path, extra_routes=(), policy=None, listener=None, limits=None):
    mail = tmp_path / "mail"
    routes = list(extra_routes)
    for d in ("company.com", "company1.com", "local.example"):
        if not any(r["domain"] == d for r in routes):
            routes.append({"domain": d, "to": ["maildir:%s" % mail]})
    routes.append({"domain": "ALL", "to": [DEAD_ROUTE]})
    s = mailgate(top={"routes": routes}, policy=policy, listener=listener, limits=limits)
    return s, mail


def job_gone(s, mid):
    return mid not in s.queue_mids() and not (s.spool / "state" / str(mid)).exists()


# ------------------------------------------------------------------ the example

PART1 = (b"From: Mr. Spacely <spacely@example.com>\r\n"
         b"To: &first_name; &last_name; <&*TO;>\r\n"
         b"Subject: Thanks for being a customer\r\n"
         b"\r\n"
         b"Dear &first_name;,\r\n"
         b"Thank you for purchasing a &color; sprocket.\r\n")
PART2 = b"P.S. Your sprocket ships tomorrow.\r\n"

JANE = (b"From: Mr. Spacely <spacely@example.com>\r\n"
        b"To: Jane User <jane@company.com>\r\n"
        b"Subject: Thanks for being a customer\r\n"
        b"\r\n"
        b"Dear Jane,\r\n"
        b"Thank you for purchasing a red sprocket.\r\n"
        b"P.S. Your sprocket ships tomorrow.\r\n")
JOE = (b"From: Mr. Spacely <spacely@example.com>\r\n"
       b"To: Joe User <joe@company1.com>\r\n"
       b"Subject: Thanks for being a customer\r\n"
       b"\r\n"
       b"Dear Joe,\r\n"
       b"Thank you for purchasing a black sprocket.\r\n")

# the transcript of ipmm.md, the server's lines exactly (MID as a pattern)
EXAMPLE = [
    ("EHLO client.example", [b"250-" + H.encode(), b"250-8BITMIME", b"250-SIZE 10485760",
                             b"250-PIPELINING", b"250 XMRG"]),
    ("XMRG FROM:<user@domain.com>", [b"250 OK"]),
    ('XDFN first_name="Jane" last_name="User" color="red" *PARTS=1,2', [b"250 OK"]),
    ("RCPT TO:<jane@company.com>", [b"250 recipient <jane@company.com> ok"]),
    ('XDFN first_name="Joe" last_name="User" color="black" *PARTS=1', [b"250 OK"]),
    ("RCPT TO:<joe@company1.com>", [b"250 recipient <joe@company1.com> ok"]),
    ("XPRT 1", [b"354 OK, send part"]),
    (PART1 + b".\r\n", [b"250 OK"]),
    ("XPRT 2 LAST", [b"354 OK, send part"]),
    (PART2 + b".\r\n", [re.compile(rb"250 ok: Message (\d+) accepted")]),
]


def run_example(c):
    """Send the example; every reply byte for byte; returns the job's MID."""
    mid = None
    for send, want in EXAMPLE:
        c.send(send if isinstance(send, bytes) else send.encode() + b"\r\n")
        r = c.reply()
        got = r.raw.split(b"\r\n")[:-1]
        assert len(got) == len(want), (send, r.raw)
        for g, w in zip(got, want):
            if isinstance(w, re.Pattern):
                m = w.fullmatch(g)
                assert m, (send, r.raw)
                mid = int(m.group(1))
            else:
                assert g == w, (send, r.raw)
    return mid


def check_split_log(s, mark, job, n):
    log = s.log_since(mark)
    split = [int(m) for m in re.findall(r"Info: MID %d was split creating MID (\d+)$" % job, log,
                                        re.M)]
    assert len(split) == n, log[-3000:]
    assert all(m > job for m in split), split
    return split


def test_example_end_to_end_maildir(mailgate, tmp_path):
    s, mail = merge_server(mailgate, tmp_path)
    mark = s.log_mark()
    c = s.connect()
    job = run_example(c)
    c.quit()
    got = {}
    for box in ("jane@company.com", "joe@company1.com"):
        files = poll_until(lambda: new_files(mail, box), WAIT, what="a file in %s/new" % box)
        assert len(files) == 1, files
        received, rest = split_received(files[0].read_bytes())
        got[box] = (received, rest)
    assert got["jane@company.com"][1] == JANE
    assert got["joe@company1.com"][1] == JOE
    split = check_split_log(s, mark, job, 2)
    # each assembled message has its own MID, named in its own Received: header
    ids = sorted(int(re.search(rb"\bid (\d+) ", got[b][0]).group(1)) for b in got)
    assert ids == sorted(split)
    assert b"for <jane@company.com>;" in got["jane@company.com"][0]
    poll_until(lambda: job_gone(s, job), WAIT, what="the job to leave the queue")
    for m in split:
        poll_until(lambda: job_gone(s, m), WAIT, what="MID %d to leave the queue" % m)
    s.assert_log(r"Info: Message finished MID %d done$" % job, mark)


class Sink:
    """A minimal SMTP server on 127.0.0.1: takes every message, keeps its bytes."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.messages = []          # (rcpts, data)
        self.lock = threading.Lock()
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        f = conn.makefile("rb")

        def say(line):
            conn.sendall(line + b"\r\n")
        try:
            say(b"220 sink.test ESMTP")
            rcpts = []
            while True:
                line = f.readline()
                if not line:
                    return
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    say(b"250 sink.test")
                elif verb == b"MAIL":
                    rcpts = []
                    say(b"250 ok")
                elif verb == b"RCPT":
                    rcpts.append(line.split(b"<", 1)[1].split(b">", 1)[0].decode())
                    say(b"250 ok")
                elif verb == b"DATA":
                    say(b"354 go ahead")
                    data = b""
                    while not data.endswith(b"\r\n.\r\n") and data != b".\r\n":
                        chunk = f.readline()
                        if not chunk:
                            return
                        data += chunk
                    body = data[:-3]
                    lines = body.split(b"\r\n")
                    body = b"\r\n".join(l[1:] if l.startswith(b".") else l for l in lines)
                    with self.lock:
                        self.messages.append((rcpts, body))
                    say(b"250 ok queued")
                elif verb == b"QUIT":
                    say(b"221 bye")
                    return
                else:
                    say(b"250 ok")
        finally:
            conn.close()

    def close(self):
        self.stop = True
        self.sock.close()


def test_example_end_to_end_smtp_sink(mailgate, tmp_path):
    sink = Sink()
    try:
        s, _ = merge_server(mailgate, tmp_path, extra_routes=[
            {"domain": "company.com", "to": ["127.0.0.1:%d" % sink.port]},
            {"domain": "company1.com", "to": ["127.0.0.1:%d" % sink.port]}])
        mark = s.log_mark()
        c = s.connect()
        job = run_example(c)
        c.quit()
        poll_until(lambda: len(sink.messages) >= 2, WAIT, what="two messages at the sink")
        with sink.lock:
            got = {tuple(r): split_received(d)[1] for r, d in sink.messages}
        assert got == {("jane@company.com",): JANE, ("joe@company1.com",): JOE}
        check_split_log(s, mark, job, 2)
        poll_until(lambda: job_gone(s, job), WAIT, what="the job to leave the queue")
    finally:
        sink.close()


# ------------------------------------------------------------------ on and off

def test_ehlo_and_help_where_mail_merge_is_off(mailgate):
    s = mailgate(listener={"ipmm": False}, limits={"bad_command_limit": 100})
    c = s.connect()
    r = c.ehlo()
    assert "XMRG" not in r.lines
    mark = s.log_mark()
    for line in ("XMRG FROM:<a@b.example>", "XDFN a=b", "XPRT 1", "XLSMTP-ACKRCPT OFF"):
        c.cmd(line, 500, "#5.5.1 command not recognized")
    s.assert_failed_logged(c, mark, count=4)
    c.cmd("HELP XMRG", 501, "Unknown command XMRG")
    r = c.cmd("HELP", 214)
    assert "xmrg" not in r.text
    c.quit()


def test_ehlo_lists_xmrg_and_public_default_off(mailgate):
    s = mailgate()
    c = s.connect()
    assert c.ehlo().lines[-1] == "XMRG"
    c.cmd("HELP XPRT", 214, "XPRT <part number> [LAST]")
    c.quit()
    p = mailgate(listener_type="public")
    c = p.connect()
    assert "XMRG" not in c.ehlo().lines
    c.cmd("XMRG FROM:<a@b.example>", 500, "#5.5.1 command not recognized")
    c.quit()


# ------------------------------------------------------------------ every mail merge reply

@pytest.fixture(scope="module")
def mm(mailgate_module):
    return mailgate_module(limits={"bad_command_limit": 100})


def merge_start(c, rcpts=("a@local.example",), xdfn=None):
    c.ehlo()
    c.cmd("XMRG FROM:<s@test.example>", 250, "OK")
    for r in rcpts:
        if xdfn:
            c.cmd("XDFN " + xdfn, 250, "OK")
        c.cmd("RCPT TO:<%s>" % r, 250, "recipient <%s> ok" % r)


def test_data_within_merge(mm):
    c = mm.connect()
    merge_start(c)
    mark = mm.log_mark()
    c.cmd("DATA", 503, "Bad sequence of commands: DATA within mailmerge transaction")
    mm.assert_failed_logged(c, mark, count=1)
    c.cmd("RSET", 250, "ok")
    c.quit()


def test_xprt_within_plain(mm):
    c = mm.connect()
    c.ehlo()
    c.mail("s@test.example")
    c.rcpt("a@local.example")
    mark = mm.log_mark()
    c.cmd("XPRT 1", 503, "Bad sequence of commands: XPRT within plain transaction")
    c.cmd("XDFN a=b", 503, "Not in a mailmerge transaction")
    mm.assert_failed_logged(c, mark, count=2)
    c.quit()


def test_not_in_merge(mm):
    c = mm.connect()
    c.ehlo()
    mark = mm.log_mark()
    c.cmd("XDFN a=b", 503, "Not in a mailmerge transaction")
    c.cmd("XPRT 1", 503, "Not in a mailmerge transaction")
    c.cmd("XPRT 1 LAST", 503, "Not in a mailmerge transaction")
    mm.assert_failed_logged(c, mark, count=3)
    c.quit()


def test_xdfn_and_rcpt_after_first_xprt(mm):
    c = mm.connect()
    merge_start(c)
    c.cmd("XPRT 1", 354, "OK, send part")
    c.send(b"Subject: x\r\n\r\nbody\r\n.\r\n")
    c.expect(250, "OK")
    mark = mm.log_mark()
    c.cmd("XDFN a=b", 503, "Bad sequence of commands: now receiving parts")
    c.cmd("RCPT TO:<b@local.example>", 503, "Bad sequence of commands: now receiving parts")
    mm.assert_failed_logged(c, mark, count=2)
    c.cmd("RSET", 250, "ok")
    c.quit()


@pytest.mark.parametrize("arg,code,text", [
    ("foo", 504, "Invalid XDFN syntax"),
    ("a=b c", 504, "Invalid XDFN syntax"),
    ("=b", 504, "Invalid XDFN syntax"),
    ('a="unterminated', 504, "Invalid XDFN syntax"),
    ("<a=b", 504, "Invalid XDFN syntax"),
    ("a=", 504, "No variable value specified"),
    ("a=1 b=", 504, "No variable value specified"),
    ("<a=>", 504, "No variable value specified"),
    ("*FOO=1", 504, "Reserved variable name"),
    ("*TO=x@y", 504, "Reserved variable name"),
    ("*PARTS=1,,2", 504, "Syntax error in *parts syntax"),
    ("*PARTS=0", 504, "Syntax error in *parts syntax"),
    ("*PARTS=a", 504, "Syntax error in *parts syntax"),
    ("*PARTS=1,2,", 504, "Syntax error in *parts syntax"),
])
def test_xdfn_errors(mm, arg, code, text):
    c = mm.connect()
    merge_start(c)
    mark = mm.log_mark()
    c.cmd("XDFN " + arg, code, text)
    mm.assert_failed_logged(c, mark, count=1)
    c.cmd("XDFN a=b <c=d> [e=\"f g\"] *PARTS=1 *DK=profile", 250, "OK")
    c.quit()


def test_xdfn_nul(mm):
    c = mm.connect()
    merge_start(c)
    mark = mm.log_mark()
    c.send(b"XDFN a=b\x00c\r\n")
    c.expect(504, "XDFN command must not contain NULL characters")
    # a NUL wins over being outside a merge, too
    c.cmd("RSET", 250, "ok")
    c.send(b"XDFN \x00\r\n")
    c.expect(504, "XDFN command must not contain NULL characters")
    mm.assert_failed_logged(c, mark, count=2)
    c.quit()


def test_xdfn_line_4096_accepted_4097_refused(mm):
    c = mm.connect()
    merge_start(c)
    head = b"XDFN v="
    line = head + b"x" * (4096 - 2 - len(head))
    assert len(line + b"\r\n") == 4096
    c.send(line + b"\r\n")
    c.expect(250, "OK")
    mark = mm.log_mark()
    c.send(line + b"y\r\n")
    c.expect(500, "Line too long")
    mm.assert_failed_logged(c, mark, count=1)
    # other commands keep their 512
    c.send(b"NOOP " + b"x" * 600 + b"\r\n")
    c.expect(500, "Line too long")
    c.quit()


def test_xdfn_one_recipient_64k(mm):
    c = mm.connect()
    merge_start(c, rcpts=[])
    for i in range(16):
        c.cmd("XDFN v%02d=%s" % (i, "x" * 4000), 250, "OK")
    mark = mm.log_mark()
    c.cmd("XDFN v16=%s" % ("x" * 4000), 504, "Invalid XDFN syntax")
    mm.assert_failed_logged(c, mark, count=1)
    c.cmd("RCPT TO:<a@local.example>", 250)
    # the next recipient starts empty
    c.cmd("XDFN v16=%s" % ("x" * 4000), 250, "OK")
    c.quit()


@pytest.mark.parametrize("arg,code,text", [
    ("", 504, "Invalid part number"),
    ("0", 504, "Invalid part number"),
    ("x", 504, "Invalid part number"),
    ("-1", 504, "Invalid part number"),
    ("1x", 504, "Invalid part number"),
    ("99999999999999999999", 504, "Invalid part number"),
    ("1 NOW", 501, "Unknown option NOW"),
    ("1 LAST NOW", 501, "Unknown option NOW"),
])
def test_xprt_errors(mm, arg, code, text):
    c = mm.connect()
    merge_start(c)
    mark = mm.log_mark()
    c.cmd(("XPRT " + arg).strip(), code, text)
    mm.assert_failed_logged(c, mark, count=1)
    # no 354 was sent, nothing was read as part text: the next command is a command
    c.cmd("NOOP", 250, "ok")
    c.quit()


def test_xprt_number_already_sent(mm):
    c = mm.connect()
    merge_start(c)
    c.cmd("XPRT 2", 354, "OK, send part")
    c.send(b"two\r\n.\r\n")
    c.expect(250, "OK")
    mark = mm.log_mark()
    c.cmd("XPRT 2", 504, "Invalid part number 2")
    c.cmd("XPRT 2 LAST", 504, "Invalid part number 2")
    mm.assert_failed_logged(c, mark, count=2)
    c.cmd("NOOP", 250, "ok")
    c.quit()


def test_xprt_last_with_parts_missing(mm):
    c = mm.connect()
    merge_start(c, rcpts=["a@local.example"], xdfn="*PARTS=1,2,3")
    c.cmd("XPRT 1", 354, "OK, send part")
    c.send(b"one\r\n.\r\n")
    c.expect(250, "OK")
    mark = mm.log_mark()
    c.cmd("XPRT 3 LAST", 504, "Other parts still missing")
    c.cmd("XPRT 4 LAST", 504, "Other parts still missing")
    mm.assert_failed_logged(c, mark, count=2)
    c.cmd("XPRT 2", 354, "OK, send part")
    c.send(b"two\r\n.\r\n")
    c.expect(250, "OK")
    c.cmd("XPRT 3 LAST", 354, "OK, send part")
    c.send(b"three\r\n.\r\n")
    c.expect(250, re.compile(r"ok: Message \d+ accepted"))
    c.quit()


def test_xprt_without_recipient_and_ackrcpt_value(mm):
    c = mm.connect()
    c.ehlo()
    c.cmd("XMRG FROM:<s@test.example> VERSION=1 BODY=8BITMIME SIZE=100", 250, "OK")
    mark = mm.log_mark()
    c.cmd("XPRT 1 LAST", 503, "#5.5.1 RCPT first")
    c.cmd("XLSMTP-ACKRCPT MAYBE", 501, "Unknown value MAYBE")
    c.cmd("RSET", 250, "ok")
    c.cmd("XMRG FROM:<s@test.example> VERSION=2", 501, "Unknown value 2")
    c.cmd("XMRG FROM:<s@test.example> FOO=1", 504, "Command parameter FOO unrecognized")
    c.cmd("XMRG FROM:<s@test.example>", 250, "OK")
    c.cmd("XMRG FROM:<s@test.example>", 503, "#5.5.1 Nested MAIL command")
    c.cmd("MAIL FROM:<s@test.example>", 503, "#5.5.1 Nested MAIL command")
    mm.assert_failed_logged(c, mark, count=6)
    c.quit()


# ------------------------------------------------------------------ acknowledgements off

def test_ackrcpt_off_with_pipelined_rcpts(mailgate, tmp_path):
    s, mail = merge_server(mailgate, tmp_path)
    mark = s.log_mark()
    c = s.connect()
    c.ehlo()
    c.cmd("XLSMTP-ACKRCPT OFF", 250, "OK")
    c.cmd("XMRG FROM:<s@test.example>", 250, "OK")
    n = 50
    group = b""
    for i in range(n):
        group += b"XDFN name=n%d\r\nRCPT TO:<r%d@local.example>\r\n" % (i, i)
        if i == 10:     # refused, logged, and not answered either
            group += b"XDFN name=bad\r\nRCPT TO:<bad@@local.example>\r\n"
            group += b"RCPT TO:<b\xe9d@local.example>\r\n"
    group += b"NOOP\r\n"
    c.send(group)
    # one 250 OK per XDFN, nothing for any RCPT, then the NOOP's reply
    for i in range(n + 1):
        c.expect(250, "OK")
    c.expect(250, "ok")
    c.cmd("XPRT 1 LAST", 354, "OK, send part")
    c.send(b"Subject: hello &name;\r\n\r\nto &*TO;\r\n.\r\n")
    job = c.expect(250, re.compile(r"ok: Message \d+ accepted")).mid
    c.quit()
    s.assert_failed_logged(c, mark, count=2)
    for i in (0, 10, 11, n - 1):
        box = "r%d@local.example" % i
        files = poll_until(lambda: new_files(mail, box), WAIT, what="a file in %s" % box)
        _, rest = split_received(files[0].read_bytes())
        assert rest == b"Subject: hello n%d\r\n\r\nto %s\r\n" % (i, box.encode())
    check_split_log(s, mark, job, n)
    poll_until(lambda: job_gone(s, job), WAIT, what="the job to leave the queue")


# ------------------------------------------------------------------ assembly

def test_substitution_parts_order_and_quoting(mailgate, tmp_path):
    s, mail = merge_server(mailgate, tmp_path)
    c = s.connect()
    c.ehlo()
    c.cmd("XMRG FROM:<boss@test.example>", 250, "OK")
    # order, wrapping, quoting, escapes; a value that looks like a name stays as it is
    c.cmd('XDFN <a=one> [b="two words"] c=x/ y/"z d="&a;" *PARTS=3,1', 250, "OK")
    c.cmd("RCPT TO:<first@local.example>", 250)
    c.cmd("XDFN a=uno", 250, "OK")
    c.cmd("RCPT TO:<second@local.example>", 250)
    c.cmd("RCPT TO:<third@local.example>", 250)
    parts = {1: b"Subject: p1 &a;\r\n\r\n&b;|&c;|&d;|&trade;|&unknown;|&a|&;|& a;\r\n",
             2: b"part two &*FROM; &*TO;\r\n..dot line\r\n",
             3: b"X-Three: &*TO;\r\n"}
    c.cmd("XPRT 3", 354, "OK, send part")
    c.send(stuff(parts[3]) + b".\r\n")
    c.expect(250, "OK")
    c.cmd("XPRT 1", 354, "OK, send part")
    c.send(stuff(parts[1]) + b".\r\n")
    c.expect(250, "OK")
    c.cmd("XPRT 2 LAST", 354, "OK, send part")
    c.send(b"part two &*FROM; &*TO;\r\n..dot line\r\n.\r\n")
    c.expect(250, re.compile(r"ok: Message \d+ accepted"))
    c.quit()

    def body(box):
        files = poll_until(lambda: new_files(mail, box), WAIT, what="a file in %s" % box)
        return split_received(files[0].read_bytes())[1]
    assert body("first@local.example") == (
        b"X-Three: first@local.example\r\n"
        b"Subject: p1 one\r\n\r\ntwo words|x y\"z|&a;|&trade;|&unknown;|&a|&;|& a;\r\n")
    # no *PARTS: every part, in ascending order
    assert body("second@local.example") == (
        b"Subject: p1 uno\r\n\r\n&b;|&c;|&d;|&trade;|&unknown;|&a|&;|& a;\r\n"
        b"part two boss@test.example second@local.example\r\n.dot line\r\n"
        b"X-Three: second@local.example\r\n")
    # no variables at all: names stay, reserved ones are filled
    assert body("third@local.example").startswith(b"Subject: p1 &a;\r\n")


def test_date_variable(mailgate, tmp_path):
    s, mail = merge_server(mailgate, tmp_path)
    c = s.connect()
    c.ehlo()
    c.cmd("XMRG FROM:<boss@test.example>", 250, "OK")
    c.cmd("RCPT TO:<d@local.example>", 250)
    c.cmd("XPRT 1 LAST", 354, "OK, send part")
    c.send(b"Date: &*DATE;\r\n\r\nx\r\n.\r\n")
    c.expect(250, re.compile(r"ok: Message \d+ accepted"))
    c.quit()
    files = poll_until(lambda: new_files(mail, "d@local.example"), WAIT, what="the file")
    rest = split_received(files[0].read_bytes())[1]
    assert re.fullmatch(rb"Date: (Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|"
                        rb"Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d [+-]\d{4}\r\n\r\nx\r\n",
                        rest), rest


# ------------------------------------------------------------------ hostile part data

@pytest.mark.parametrize("way", ["one", "bytes"])
def test_part_smuggling_is_refused(mailgate, tmp_path, way):
    """A fake end of data inside a part is text; with bare_crlf = reject the part is
    refused once the real end arrives, the job is dropped and nothing after the fake
    end was ever a command."""
    s, mail = merge_server(mailgate, tmp_path)
    c = s.connect()
    merge_start(c, rcpts=["v@local.example"])
    c.cmd("XPRT 1 LAST", 354, "OK, send part")
    mark = s.log_mark()
    c.send(b"Subject: x\r\n\r\nhi\n.\nXMRG FROM:<evil@x>\r\nRCPT TO:<w@local.example>\r\n"
           b"\r\n.\r\n", way=way)
    c.expect(554, "message body contains illegal bare CR/LF characters.")
    s.assert_failed_logged(c, mark, count=1)
    c.cmd("NOOP", 250, "ok")
    c.quit()
    assert s.queue_mids() == []
    assert new_files(mail, "w@local.example") == []


def test_part_size_limit_counts_every_part(mailgate, tmp_path):
    s, _ = merge_server(mailgate, tmp_path, policy={"max_message_size": 1000})
    c = s.connect()
    merge_start(c)
    c.cmd("XPRT 1", 354, "OK, send part")
    c.send(b"x" * 600 + b"\r\n.\r\n")
    c.expect(250, "OK")
    c.cmd("XPRT 2 LAST", 354, "OK, send part")
    c.send(b"y" * 600 + b"\r\n.\r\n")
    c.expect(552, "#5.3.4 message size exceeds limit")
    c.cmd("NOOP", 250, "ok")
    c.quit()
    assert s.queue_mids() == []


# ------------------------------------------------------------------ crash

@pytest.mark.parametrize("when", ["at-once", "mid-split"])
def test_kill9_after_final_250_every_recipient_delivered(mailgate, tmp_path, when):
    s, mail = merge_server(mailgate, tmp_path, policy={"max_recipients_per_message": 0})
    n = 1500
    c = s.connect()
    c.ehlo()
    c.cmd("XLSMTP-ACKRCPT OFF", 250, "OK")
    c.cmd("XMRG FROM:<s@test.example>", 250, "OK")
    group = b"".join(b"XDFN who=w%d\r\nRCPT TO:<k%d@local.example>\r\n" % (i, i)
                     for i in range(n))
    c.send_background(group)
    for i in range(n):
        c.expect(250, "OK")
    assert c.join_background() is None
    c.cmd("XPRT 1 LAST", 354, "OK, send part")
    c.send(b"Subject: for &who;\r\n\r\nhello &*TO;\r\n.\r\n")
    mark = s.log_mark()
    job = c.expect(250, re.compile(r"ok: Message \d+ accepted")).mid
    if when == "mid-split":
        # some messages split (and some delivered), most not: resume in the middle
        poll_until(lambda: len(re.findall(r"was split creating MID", s.log_since(mark))) >= 300,
                   WAIT, what="300 messages split")
    s.kill()                    # at once: the split is in every stage, or not begun
    restart = s.log_mark()
    s.start()
    if when == "mid-split":
        s.wait_log(r"Info: MID %d mail merge split resumed: [1-9]\d* recipients split before"
                   % job, restart)
    boxes = ["k%d@local.example" % i for i in range(n)]

    def missing():
        return [b for b in boxes if not new_files(mail, b)]
    poll_until(lambda: not missing(), 120, what="every recipient's message")
    poll_until(lambda: job_gone(s, job), WAIT, what="the job to leave the queue")
    for i, b in enumerate(boxes):
        mids = set()
        files = new_files(mail, b)
        for f in files:
            received, rest = split_received(f.read_bytes())
            assert rest == b"Subject: for w%d\r\n\r\nhello %s\r\n" % (i, b.encode())
            mids.add(int(re.search(rb"\bid (\d+) ", received).group(1)))
        # split exactly once: an intent line precedes each commit, and queue/<MID> says
        # whether the message was made before the kill. The delivery of one message may
        # be repeated (its outcome not yet durable at the kill), at most once more.
        assert len(mids) == 1, (b, mids)
        assert len(files) <= 2, (b, files)
