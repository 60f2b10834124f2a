"""mailgate probe: the administrator's telnet session, automated, against mailgate
itself and against small foreign SMTP servers written here (plain and with
STARTTLS). Only 127.0.0.1 is ever a target; every wait is bounded by --timeout or
by a reply, never by a sleep."""

import base64
import json
import os
import pty
import re
import select
import socket
import socketserver
import ssl
import subprocess
import threading

import pytest

from conftest import SAN_ENV, HOST, check_cli_sanitizers, free_port, mailgate_bin

VERDICT_MID = re.compile(r"^accepted: message queued as MID (\d+)$")
PROBE_TIMEOUT = "20"            # generous: the sanitizer build is slow; never a timing check


def probe(*args, env=None, input=None, timeout=90):
    b = mailgate_bin()
    if not os.path.exists(b):
        pytest.fail("mailgate binary not found at %s" % b)
    e = dict(os.environ)
    for k, v in SAN_ENV.items():
        e.setdefault(k, v)
    e.pop("NO_COLOR", None)
    e.pop("MAILGATE_PASSWORD", None)
    e.update(env or {})
    r = subprocess.run([b, "probe"] + list(args), capture_output=True, timeout=timeout, env=e,
                       input=input)
    check_cli_sanitizers(r)
    return r


def text(r):
    return r.stdout.decode("ascii", "replace")


def lines(r):
    return text(r).rstrip("\n").split("\n")


def verdict(r):
    return lines(r)[-1]


def show(r):
    return "exit %s\nstdout:\n%s\nstderr:\n%s" % (r.returncode, text(r),
                                                   r.stderr.decode(errors="replace"))


# ------------------------------------------------------------- a foreign SMTP server

DEFAULT_REPLIES = {
    "EHLO": "250-foreign.test\r\n250-PIPELINING\r\n250 8BITMIME",
    "HELO": "250 foreign.test",
    "MAIL": "250 2.1.0 Ok",
    "RCPT": "250 2.1.5 Ok",
    "DATA": "354 End data with <CR><LF>.<CR><LF>",
    ".": "250 2.0.0 Ok: queued as 4FAKEQ1",
    "QUIT": "221 2.0.0 Bye",
    "NOOP": "250 2.0.0 Ok",
    "RSET": "250 2.0.0 Ok",
}


class Foreign:
    """A few lines of some other SMTP server on 127.0.0.1. replies maps a whole command
    line, or else its verb (or "." for the end of data), to the reply text, a function
    of the line giving it, None to close the connection, or a list of those. With a
    TLS context, STARTTLS is answered 220 and the session goes on encrypted."""

    def __init__(self, replies=None, banner="220 foreign.test ESMTP", tls=None):
        self.replies = dict(DEFAULT_REPLIES)
        self.replies.update(replies or {})
        self.banner = banner
        self.tls = tls
        self.received = []          # command lines as received, without CRLF
        self.messages = []          # message data as received (still dot-stuffed)
        self.tls_sessions = 0
        self.errors = []
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                try:
                    outer.session(self.request)
                except Exception as e:       # a failed handshake ends one session only
                    outer.errors.append(repr(e))

        self.server = socketserver.ThreadingTCPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def session(self, sock):
        f = sock.makefile("rwb")

        def say(reply):
            f.write(reply.encode("latin-1") + b"\r\n")
            f.flush()

        def respond(reply, cmd):
            """send the reply(s); the last text sent, or None after closing"""
            sent = None
            for r in reply if isinstance(reply, list) else [reply]:
                if callable(r):
                    r = r(cmd)
                if r is None:
                    f.close()
                    sock.close()
                    return None
                say(r)
                sent = r
            return sent

        say(self.banner)
        while True:
            line = f.readline()
            if not line:
                return
            cmd = line.rstrip(b"\r\n").decode("latin-1")
            self.received.append(cmd)
            verb = cmd.split(" ")[0].split(":")[0].upper() if cmd else ""
            if verb == "STARTTLS" and self.tls is not None:
                say("220 2.0.0 Ready to start TLS")
                f.close()
                sock = self.tls.wrap_socket(sock, server_side=True)
                self.tls_sessions += 1
                f = sock.makefile("rwb")
                continue
            reply = respond(self.replies.get(cmd, self.replies.get(
                verb, "502 5.5.2 Error: command not recognized")), cmd)
            if reply is None:
                return
            if verb == "DATA" and reply.startswith("354"):
                data = b""
                while not data.endswith(b"\r\n.\r\n") and data != b".\r\n":
                    chunk = f.readline()
                    if not chunk:
                        return
                    data += chunk
                self.messages.append(data)
                if respond(self.replies["."], ".") is None:
                    return
            if verb == "QUIT":
                return

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def foreign():
    made = []

    def make(**kw):
        f = Foreign(**kw)
        made.append(f)
        return f
    yield make
    for f in made:
        f.close()


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key),
                        "-out", str(cert), "-days", "2", "-subj", "/CN=probe.test/O=Probe Test"],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip("openssl req failed: %s" % r.stderr.decode(errors="replace"))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def silent_listener():
    """A socket that listens and never accepts: the kernel completes the connection,
    and no banner ever comes."""
    s = socket.socket()
    s.bind((HOST, 0))
    s.listen(8)
    return s


# ------------------------------------------------------------- against mailgate

def test_accepted_with_mid_in_spool(mailgate):
    srv = mailgate()
    r = probe("--timeout", PROBE_TIMEOUT, "--to", "someone@test.example",
              "--from", "admin@test.example", "%s:%d" % (HOST, srv.port))
    assert r.returncode == 0, show(r)
    m = VERDICT_MID.match(verdict(r))
    assert m, show(r)
    mid = int(m.group(1))
    assert mid in srv.queue_mids(), show(r)
    sf = srv.spool_file(mid)
    assert sf.field("sender") == "<admin@test.example>"
    assert sf.rcpts == [(0, "<someone@test.example>")]
    # the default test message has the headers a filter expects
    body = sf.body.decode()
    for h in ("Subject: ", "Date: ", "Message-ID: <", "From: <admin@test.example>",
              "To: <someone@test.example>"):
        assert "\r\n" + h in "\r\n" + body, body
    # the transcript reads like telnet, with the time of each reply
    out = text(r)
    assert "C: MAIL FROM:<admin@test.example>" in out
    assert "C: RCPT TO:<someone@test.example>" in out
    assert "C: DATA" in out and "C: ." in out and "C: QUIT" in out
    assert re.search(r"^S: 220 mx\.test\.example ESMTP  \(\d+ ms\)$", out, re.M), out
    assert re.search(r"^S: 250 ok: Message %d accepted  \(\d+ ms\)$" % mid, out, re.M), out


def test_defaults_from_and_postmaster(mailgate):
    srv = mailgate()
    r = probe("--timeout", PROBE_TIMEOUT, "%s:%d" % (HOST, srv.port))
    assert r.returncode == 0, show(r)
    mid = int(VERDICT_MID.match(verdict(r)).group(1))
    sf = srv.spool_file(mid)
    local = socket.gethostname()
    assert sf.field("sender") == "<probe@%s>" % local
    assert sf.rcpts == [(0, "<postmaster@[127.0.0.1]>")]
    assert sf.field("helo") == local


def test_refused_at_connect_by_reject_policy(mailgate):
    srv = mailgate(policy={"action": "reject"})
    r = probe("--timeout", PROBE_TIMEOUT, "%s:%d" % (HOST, srv.port))
    assert r.returncode == 1, show(r)
    assert verdict(r) == "refused at connect: 554 mx.test.example Access denied", show(r)
    out = text(r)
    # the explanation from the reply table names the settings behind it
    assert re.search(r"^   -> \S", out, re.M), out
    assert "reject_text" in out and "listeners.*.hat" in out, out
    assert "C: MAIL" not in out


def test_too_many_recipients(mailgate):
    srv = mailgate(policy={"max_recipients_per_message": 1})
    r = probe("--timeout", PROBE_TIMEOUT, "--to", "a@test.example", "--to", "b@test.example",
              "%s:%d" % (HOST, srv.port))
    assert r.returncode == 1, show(r)
    assert verdict(r) == "refused at RCPT: 452 #4.5.3 Too many recipients", show(r)
    out = text(r)
    i = out.index("S: 452 #4.5.3 Too many recipients")
    assert "max_recipients_per_message" in out[i:], out
    # nothing is sent after a refused recipient but QUIT
    assert "C: DATA" not in out and "C: QUIT" in out
    assert srv.queue_mids() == []


def test_no_data_stops_after_rcpt(mailgate):
    srv = mailgate()
    r = probe("--timeout", PROBE_TIMEOUT, "--no-data", "%s:%d" % (HOST, srv.port))
    assert r.returncode == 0, show(r)
    assert verdict(r).startswith("accepted"), show(r)
    assert "C: DATA" not in text(r) and "C: QUIT" in text(r)
    assert srv.queue_mids() == []


def test_data_file_is_normalised_and_stuffed(mailgate, tmp_path):
    srv = mailgate()
    msg = tmp_path / "msg.txt"
    msg.write_bytes(b"Subject: from a file\n\n.starts with a dot\r\nbare CR\rend\n..two dots\nno newline")
    r = probe("--timeout", PROBE_TIMEOUT, "--data", str(msg), "%s:%d" % (HOST, srv.port))
    assert r.returncode == 0, show(r)
    mid = int(VERDICT_MID.match(verdict(r)).group(1))
    assert srv.spool_file(mid).body == (b"Subject: from a file\r\n\r\n.starts with a dot\r\n"
                                        b"bare CR\r\nend\r\n..two dots\r\nno newline\r\n")


def test_data_from_stdin(mailgate):
    srv = mailgate()
    r = probe("--timeout", PROBE_TIMEOUT, "--data", "-", "%s:%d" % (HOST, srv.port),
              input=b"Subject: stdin\n\nhello\n.\nafter a lone dot\n")
    assert r.returncode == 0, show(r)
    mid = int(VERDICT_MID.match(verdict(r)).group(1))
    # a lone "." in the data is stuffed, never the end of the message
    assert srv.spool_file(mid).body == b"Subject: stdin\r\n\r\nhello\r\n.\r\nafter a lone dot\r\n"


def test_quiet_prints_only_the_verdict(mailgate):
    srv = mailgate()
    r = probe("--quiet", "--timeout", PROBE_TIMEOUT, "%s:%d" % (HOST, srv.port))
    assert r.returncode == 0, show(r)
    assert len(lines(r)) == 1 and VERDICT_MID.match(lines(r)[0]), show(r)


def test_json_accepted(mailgate):
    srv = mailgate()
    r = probe("--json", "--timeout", PROBE_TIMEOUT, "%s:%d" % (HOST, srv.port))
    assert r.returncode == 0, show(r)
    doc = json.loads(r.stdout)
    v = doc["verdict"]
    assert v["result"] == "accepted" and v["code"] == 250, v
    assert isinstance(v["mid"], int) and v["mid"] in srv.queue_mids(), v
    steps = [s["step"] for s in doc["steps"]]
    assert steps[0] == "connect" and "EHLO" in steps and "RCPT" in steps, steps
    for s in doc["steps"]:
        assert isinstance(s["elapsed_ms"], int) and s["elapsed_ms"] >= 0, s
        assert s["lines"] and s["lines"][-1].startswith(str(s["code"]) + " "), s
        assert s["explanation"] is None, s
    assert doc["steps"][2]["command"].startswith("MAIL FROM:<"), doc["steps"]


def test_json_refused_has_explanation(mailgate):
    srv = mailgate(policy={"max_recipients_per_message": 1})
    r = probe("--json", "--timeout", PROBE_TIMEOUT, "--to", "a@test.example", "--to",
              "b@test.example", "%s:%d" % (HOST, srv.port))
    assert r.returncode == 1, show(r)
    doc = json.loads(r.stdout)
    assert doc["verdict"]["result"] == "refused"
    assert doc["verdict"]["step"] == "RCPT" and doc["verdict"]["code"] == 452
    assert doc["verdict"]["mid"] is None
    bad = [s for s in doc["steps"] if s["code"] == 452]
    assert len(bad) == 1 and "max_recipients_per_message" in bad[0]["explanation"]["setting"]
    assert bad[0]["explanation"]["what"] and bad[0]["explanation"]["advice"]


def test_starttls_refused_by_mailgate_without_tls(mailgate):
    """The default policy has tls = "off": STARTTLS is not a command there."""
    srv = mailgate()
    r = probe("--starttls", "--timeout", PROBE_TIMEOUT, "%s:%d" % (HOST, srv.port))
    assert r.returncode == 1, show(r)
    assert verdict(r).startswith("refused at STARTTLS: 500 "), show(r)
    assert "policies.*.tls" in text(r)


def test_help_and_usage_errors():
    for args in (["--help"], ["-h"]):
        r = probe(*args)
        assert r.returncode == 0 and "usage: mailgate probe" in text(r), show(r)
    r = subprocess.run([mailgate_bin(), "help", "probe"], capture_output=True)
    assert r.returncode == 0 and b"mailgate probe" in r.stdout
    for args in ([], ["--timeout", "soon", "127.0.0.1"], ["--bogus", "127.0.0.1"],
                 ["127.0.0.1", "127.0.0.2"], ["127.0.0.1:99999"], ["[::1"], ["--to"]):
        r = probe(*args)
        assert r.returncode == 2, "%r: %s" % (args, show(r))
        assert r.stderr, args


# ------------------------------------------------------------- no connection, timeouts

def test_closed_port_could_not_connect():
    port = free_port()
    r = probe("--timeout", PROBE_TIMEOUT, "%s:%d" % (HOST, port))
    assert r.returncode == 2, show(r)
    assert verdict(r) == "could not connect to %s:%d: Connection refused" % (HOST, port), show(r)


def test_closed_port_json():
    port = free_port()
    r = probe("--json", "--timeout", PROBE_TIMEOUT, "%s:%d" % (HOST, port))
    assert r.returncode == 2, show(r)
    doc = json.loads(r.stdout)
    assert doc["verdict"]["result"] == "no-connection", doc
    assert "could not connect" in doc["verdict"]["text"]


def test_silent_server_times_out():
    s = silent_listener()
    try:
        r = probe("--timeout", "2", "%s:%d" % (HOST, s.getsockname()[1]))
    finally:
        s.close()
    assert r.returncode == 2, show(r)
    assert verdict(r).startswith("could not connect to %s:" % HOST), show(r)
    assert "timed out" in verdict(r), show(r)


def test_server_closing_mid_session(foreign):
    f = foreign(replies={"MAIL": None})
    r = probe("--timeout", PROBE_TIMEOUT, "%s:%d" % (HOST, f.port))
    assert r.returncode == 2, show(r)
    assert verdict(r) == "connection lost at MAIL: the server closed the connection", show(r)


def test_server_stalling_after_data(foreign):
    gate = threading.Event()

    def stall(cmd):
        gate.wait(30)
        return "250 2.0.0 too late"
    f = foreign(replies={".": stall})
    try:
        r = probe("--timeout", "2", "%s:%d" % (HOST, f.port))
    finally:
        gate.set()
    assert r.returncode == 2, show(r)
    assert verdict(r).startswith("connection lost at end of data: timed out"), show(r)


def test_not_an_smtp_server(foreign):
    f = foreign(banner="SSH-2.0-OpenSSH_9.2")
    r = probe("--timeout", PROBE_TIMEOUT, "%s:%d" % (HOST, f.port))
    assert r.returncode == 2, show(r)
    assert "not an SMTP reply" in verdict(r), show(r)


# ------------------------------------------------------------- foreign servers

def test_foreign_user_unknown_explained(foreign):
    f = foreign(replies={"RCPT": "550 5.1.1 <nobody@foreign.test>: Recipient address rejected: "
                                 "User unknown in local recipient table"})
    r = probe("--timeout", PROBE_TIMEOUT, "--to", "nobody@foreign.test", "%s:%d" % (HOST, f.port))
    assert r.returncode == 1, show(r)
    assert verdict(r).startswith("refused at RCPT: 550 5.1.1 <nobody@foreign.test>"), show(r)
    out = text(r)
    # from the table of other servers' replies, with RFC 3463's reading
    assert "user unknown" in out.lower().split("s: 550", 1)[1], out
    assert "RFC 3463 5.1.1" in out and "bad destination mailbox address" in out, out
    assert "setting:" not in out
    assert f.received[-1] == "QUIT"


def test_foreign_multiline_refusal_and_accepted_without_mid(foreign):
    f = foreign(replies={"MAIL": "451-4.7.1 Greylisted, see\r\n451 4.7.1 http://x.test/grey"})
    r = probe("--timeout", PROBE_TIMEOUT, "%s:%d" % (HOST, f.port))
    assert r.returncode == 1, show(r)
    assert verdict(r) == "refused at MAIL: 451-4.7.1 Greylisted, see ...", show(r)
    assert "greylist" in text(r).split("S: 451 4.7.1")[1].lower(), show(r)
    f2 = foreign()
    r = probe("--timeout", PROBE_TIMEOUT, "%s:%d" % (HOST, f2.port))
    assert r.returncode == 0, show(r)
    assert verdict(r) == "accepted: 250 2.0.0 Ok: queued as 4FAKEQ1", show(r)
    assert f2.messages and f2.messages[0].endswith(b"\r\n.\r\n")


def test_ehlo_refused_falls_back_to_helo(foreign):
    f = foreign(replies={"EHLO": "502 5.5.2 Error: command not recognized"})
    r = probe("--timeout", PROBE_TIMEOUT, "--helo", "probe.test", "%s:%d" % (HOST, f.port))
    assert r.returncode == 0, show(r)
    assert f.received[:2] == ["EHLO probe.test", "HELO probe.test"], f.received
    f2 = foreign()
    r = probe("--timeout", PROBE_TIMEOUT, "--plain-helo", "%s:%d" % (HOST, f2.port))
    assert r.returncode == 0, show(r)
    assert f2.received[0].startswith("HELO "), f2.received


def test_hostile_reply_text_is_escaped(foreign):
    f = foreign(replies={"RCPT": "550 5.7.1 \x1b[2J\x1b]0;owned\x07 no \xff"})
    r = probe("--timeout", PROBE_TIMEOUT, "%s:%d" % (HOST, f.port))
    assert r.returncode == 1, show(r)
    assert b"\x1b" not in r.stdout and b"\x07" not in r.stdout and b"\xff" not in r.stdout
    assert "\\x1b[2J" in text(r) and "\\xff" in text(r), show(r)
    r = probe("--json", "--timeout", PROBE_TIMEOUT, "%s:%d" % (HOST, f.port))
    assert json.loads(r.stdout)["verdict"]["result"] == "refused"


def test_auth_plain_hides_the_password(foreign):
    def auth(cmd):
        ok = cmd == "AUTH PLAIN " + base64.b64encode(b"\0admin\0s3cret pw").decode()
        return "235 2.7.0 Authentication successful" if ok else "535 5.7.8 bad credentials"
    f = foreign(replies={"EHLO": "250-foreign.test\r\n250-AUTH LOGIN PLAIN\r\n250 8BITMIME",
                         "AUTH": auth})
    r = probe("--timeout", PROBE_TIMEOUT, "--auth", "admin", "%s:%d" % (HOST, f.port),
              env={"MAILGATE_PASSWORD": "s3cret pw"})
    assert r.returncode == 0, show(r)
    secret = base64.b64encode(b"\0admin\0s3cret pw")
    assert b"s3cret" not in r.stdout and secret not in r.stdout, show(r)
    assert "C: AUTH PLAIN <credentials hidden>" in text(r)


def test_auth_login_when_plain_not_offered(foreign):
    user, pw = base64.b64encode(b"admin").decode(), base64.b64encode(b"pw").decode()
    f = foreign(replies={"EHLO": "250-foreign.test\r\n250 AUTH LOGIN",
                         "AUTH LOGIN": "334 VXNlcm5hbWU6", user: "334 UGFzc3dvcmQ6",
                         pw: "235 2.7.0 ok"})
    r = probe("--timeout", PROBE_TIMEOUT, "--auth", "admin", "%s:%d" % (HOST, f.port),
              env={"MAILGATE_PASSWORD": "pw"})
    assert r.returncode == 0, show(r)
    assert f.received[1:4] == ["AUTH LOGIN", user, pw], f.received
    assert pw.encode() not in r.stdout and "C: <password hidden>" in text(r), show(r)


def test_auth_refused(foreign):
    f = foreign(replies={"EHLO": "250-foreign.test\r\n250 AUTH PLAIN",
                         "AUTH": "535 5.7.8 Error: authentication failed"})
    r = probe("--timeout", PROBE_TIMEOUT, "--auth", "admin", "%s:%d" % (HOST, f.port),
              env={"MAILGATE_PASSWORD": "wrong"})
    assert r.returncode == 1, show(r)
    assert verdict(r) == "refused at AUTH: 535 5.7.8 Error: authentication failed", show(r)
    assert "MAIL FROM" not in " ".join(f.received)


def test_auth_password_prompt_on_terminal(foreign):
    """Without MAILGATE_PASSWORD the password is asked on /dev/tty, not echoed."""
    good = "AUTH PLAIN " + base64.b64encode(b"\0bob\0typed pw").decode()
    f = foreign(replies={"EHLO": "250-foreign.test\r\n250 AUTH PLAIN",
                         "AUTH": lambda c: "235 2.7.0 ok" if c == good else "535 5.7.8 no"})
    env = dict(os.environ)
    for k, v in SAN_ENV.items():
        env.setdefault(k, v)
    env.pop("MAILGATE_PASSWORD", None)
    pid, fd = pty.fork()            # the child's controlling terminal is the pty
    if pid == 0:
        try:
            os.execve(mailgate_bin(), [mailgate_bin(), "probe", "--quiet", "--timeout",
                                       PROBE_TIMEOUT, "--auth", "bob", "%s:%d" % (HOST, f.port)],
                      env)
        finally:
            os._exit(127)
    out = b""

    def read_more():
        ready, _, _ = select.select([fd], [], [], 60)
        assert ready, "no output from the probe: %r" % out
        try:
            return os.read(fd, 4096)
        except OSError:             # EIO: the child is gone
            return b""
    while b"password for bob: " not in out:
        chunk = read_more()
        assert chunk, out
        out += chunk
    os.write(fd, b"typed pw\n")
    while True:
        chunk = read_more()
        if not chunk:
            break
        out += chunk
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, out
    assert b"typed pw" not in out, out              # not echoed, not printed
    assert b"accepted: 250 2.0.0 Ok: queued as 4FAKEQ1" in out, out


def test_auth_without_password_source_is_usage_error():
    # no MAILGATE_PASSWORD and no terminal: nothing is sent anywhere
    r = subprocess.run([mailgate_bin(), "probe", "--auth", "admin", "127.0.0.1:%d" % free_port()],
                       capture_output=True, stdin=subprocess.DEVNULL, start_new_session=True,
                       env={k: v for k, v in os.environ.items() if k != "MAILGATE_PASSWORD"})
    assert r.returncode == 2, r
    assert b"MAILGATE_PASSWORD" in r.stderr


def test_starttls_shows_certificate_and_session(foreign, tls_context):
    f = foreign(replies={"EHLO": "250-foreign.test\r\n250-STARTTLS\r\n250 8BITMIME"},
                tls=tls_context)
    r = probe("--starttls", "--timeout", PROBE_TIMEOUT, "%s:%d" % (HOST, f.port))
    assert r.returncode == 0, show(r) + "\nserver errors: %r" % f.errors
    out = text(r)
    assert re.search(r"^   TLS: TLSv1\.[23], cipher \S+", out, re.M), out
    assert re.search(r"^   TLS: subject +.*CN=probe\.test", out, re.M), out
    assert re.search(r"^   TLS: issuer +.*CN=probe\.test", out, re.M), out
    assert re.search(r"^   TLS: notBefore \w+ +\d+ [\d:]+ \d{4} GMT$", out, re.M), out
    assert re.search(r"^   TLS: notAfter +\w+ +\d+ [\d:]+ \d{4} GMT$", out, re.M), out
    # a self-signed certificate does not verify, and the probe says so and goes on
    assert re.search(r"^   TLS: chain +NOT verified: self.signed", out, re.M), out
    assert f.tls_sessions == 1
    # EHLO again inside TLS, then the transaction
    assert [c.split(" ")[0] for c in f.received][:4] == ["EHLO", "STARTTLS", "EHLO", "MAIL"]
    assert f.messages
    assert verdict(r) == "accepted: 250 2.0.0 Ok: queued as 4FAKEQ1"


def test_starttls_json(foreign, tls_context):
    f = foreign(tls=tls_context)
    r = probe("--json", "--starttls", "--timeout", PROBE_TIMEOUT, "%s:%d" % (HOST, f.port))
    assert r.returncode == 0, show(r)
    t = json.loads(r.stdout)["tls"]
    assert t["protocol"].startswith("TLSv1.") and t["cipher"], t
    assert "CN=probe.test" in t["subject"] and t["verified"] is False, t
    assert t["not_before"] and t["not_after"], t


def test_starttls_handshake_failure(foreign):
    # the server says 220 and hangs up: the handshake cannot succeed
    f = foreign(replies={"STARTTLS": ["220 2.0.0 go ahead", None]})
    r = probe("--starttls", "--timeout", PROBE_TIMEOUT, "%s:%d" % (HOST, f.port))
    assert r.returncode == 2, show(r)
    assert verdict(r).startswith("connection lost at STARTTLS: TLS handshake failed"), show(r)


# ------------------------------------------------------------- colour

def run_on_pty(args, env):
    b = mailgate_bin()
    e = dict(os.environ)
    for k, v in SAN_ENV.items():
        e.setdefault(k, v)
    e.pop("NO_COLOR", None)
    e.update(env)
    master, slave = pty.openpty()
    p = subprocess.Popen([b, "probe"] + args, stdout=slave, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, env=e)
    os.close(slave)
    out = b""
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            p.kill()
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:             # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    p.wait(60)
    return p.returncode, out


def test_colour_only_on_a_terminal_without_no_color(mailgate):
    srv = mailgate(policy={"max_recipients_per_message": 1})
    args = ["--timeout", PROBE_TIMEOUT, "--to", "a@test.example", "--to", "b@test.example",
            "%s:%d" % (HOST, srv.port)]
    rc, out = run_on_pty(args, {})
    assert rc == 1, out
    assert b"\x1b[32mS: 250" in out and b"\x1b[33mS: 452" in out, out      # 2xx green, 4xx yellow
    assert b"\x1b[1m" in out                                                # a bold verdict
    rc, out = run_on_pty(args, {"NO_COLOR": ""})
    assert rc == 1 and b"\x1b" not in out, out
    r = probe(*args)                                                        # piped
    assert r.returncode == 1 and b"\x1b" not in r.stdout, show(r)
    r = probe(*args, env={"NO_COLOR": "1"})
    assert r.returncode == 1 and b"\x1b" not in r.stdout, show(r)
