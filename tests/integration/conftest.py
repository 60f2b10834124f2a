"""Fixtures for the integration suite: the real mailgate binary, over real sockets.

`mailgate(...)` renders a config for one server in a temporary directory, starts
`mailgate serve -c FILE`, waits for the systemd READY=1 datagram (never a sleep),
and at teardown stops it with SIGTERM and fails the test if its stderr holds a
sanitizer report or it exited with a non-zero status.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from smtpclient import Client  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
HOSTNAME = "mx.test.example"
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 30.0
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer",
                   "AddressSanitizer:DEADLYSIGNAL", "ERROR: UndefinedBehaviorSanitizer")
SAN_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1",
    "UBSAN_OPTIONS": "print_stacktrace=1",
    "LSAN_OPTIONS": "",
}
# the route every test config sends mail to: nothing listens there, so a scheduler
# (when there is one) defers the message and it stays in queue/ for the tests to read
DEAD_ROUTE = "127.0.0.1:9"

LOG_LINE = re.compile(r"^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|"
                      r"Oct|Nov|Dec) [ \d]\d \d\d:\d\d:\d\d \d{4} (Info|Warning|Critical): (.*)$")


def mailgate_bin():
    b = os.environ.get("MAILGATE_BIN") or str(REPO / "build-test" / "mailgate")
    return b


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def poll_until(fn, timeout, interval=0.05, what="condition"):
    """Call fn until it returns something truthy, with a deadline: the only
    place the suite waits between checks (polling a file or a reply for an event)."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)


# ---------------------------------------------------------------- config rendering

def _quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_value(v, indent=""):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v) + ("L" if abs(v) > 2**31 - 1 else "")
    if isinstance(v, str):
        return _quote(v)
    if isinstance(v, Raw):
        return v.text
    if isinstance(v, dict):
        inner = indent + "  "
        body = "".join("%s%s = %s;\n" % (inner, k, render_value(x, inner)) for k, x in v.items())
        return "{\n" + body + indent + "}"
    if isinstance(v, (list, tuple)):
        if v and all(isinstance(x, dict) for x in v):          # a list of groups
            inner = indent + "  "
            return "(\n" + ",\n".join(inner + render_value(x, inner) for x in v) + "\n" + indent + ")"
        return "[ " + ", ".join(render_value(x, indent) for x in v) + " ]"
    raise TypeError(v)


class Raw:
    def __init__(self, text):
        self.text = text


def render_config(settings):
    return "".join("%s = %s;\n" % (k, render_value(v)) for k, v in settings.items())


def deep_update(base, extra):
    for k, v in (extra or {}).items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            deep_update(base[k], v)
        elif v is None:
            base.pop(k, None)
        else:
            base[k] = v
    return base


# ---------------------------------------------------------------- spool files

class SpoolFile:
    """<spool>/queue/<MID>: envelope lines, a blank line, the Received: header the
    server prepends, then the client's bytes."""

    def __init__(self, path):
        self.path = Path(path)
        self.raw = self.path.read_bytes()
        cut = self.raw.find(b"\n\n")
        assert cut >= 0, "%s: no blank line after the envelope" % path
        self.envelope_bytes = self.raw[:cut + 1]
        self.envelope = self.envelope_bytes.decode("ascii", "replace").splitlines()
        self.message = self.raw[cut + 2:]
        # the server's own Received: header (first line + continuation lines)
        m = self.message
        assert m[:9].lower() == b"received:", \
            "%s: the stored message does not start with the server's Received: header: %r" % (
                path, m[:200])
        end = m.find(b"\n") + 1
        while end < len(m) and m[end:end + 1] in (b" ", b"\t"):
            nl = m.find(b"\n", end)
            end = len(m) if nl < 0 else nl + 1
        self.received = m[:end]
        self.body = m[end:]          # exactly what the client sent, unstuffed

    def field(self, key):
        vals = self.fields(key)
        assert len(vals) == 1, "%s: envelope key %r appears %d times: %r" % (
            self.path, key, len(vals), self.envelope)
        return vals[0]

    def fields(self, key):
        out = []
        for line in self.envelope[1:]:
            k, _, v = line.partition(" ")
            if k == key:
                out.append(v)
        return out

    @property
    def rcpts(self):
        out = []
        for v in self.fields("rcpt"):
            n, _, addr = v.partition(" ")
            out.append((int(n), addr))
        return out

    def check_envelope_clean(self):
        """Every envelope line is printable ASCII, the first is the magic, each key is known."""
        assert self.envelope and self.envelope[0] == "mailgate-spool 1", self.envelope[:2]
        for b in self.envelope_bytes:
            assert b == 0x0a or 0x20 <= b <= 0x7e, \
                "%s: non-printable byte %#x in the envelope: %r" % (self.path, b, self.envelope_bytes)
        known = {"mid", "arrival", "icid", "listener", "client", "helo", "sender", "body", "rcpt"}
        for line in self.envelope[1:]:
            k = line.partition(" ")[0]
            assert k in known or k.startswith("x-"), \
                "%s: unknown envelope line %r (an injected line?)" % (self.path, line)


# ---------------------------------------------------------------- the server

class Server:
    def __init__(self, factory, workdir, sockdir, settings):
        self.factory = factory
        self.bin = factory.bin
        self.dir = Path(workdir)
        self.sockdir = Path(sockdir)
        self.host = HOST
        self.settings = settings
        self.port = settings["_port"]
        self.spool = Path(settings["spool"])
        self.log_path = Path(settings["log"]["file"])
        self.config_path = self.dir / "mailgate.conf"
        self.proc = None
        self.starts = 0
        self.clients = []
        self.stderr_path = None
        self.late_connect_log = False
        self.env = {}               # extra environment for `serve` (test hooks)
        self.write_config()

    def write_config(self):
        s = {k: v for k, v in self.settings.items() if not k.startswith("_")}
        self.config_text = render_config(s)
        self.config_path.write_text(self.config_text)

    # ---- life ----
    def start(self, expect_ready=True):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        notify_path = str(self.sockdir / ("notify%d" % self.starts))
        ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        ns.bind(notify_path)
        env = dict(os.environ)
        for k, v in SAN_ENV.items():
            env.setdefault(k, v)
        env.update(self.env)
        env["NOTIFY_SOCKET"] = notify_path
        self.stderr_path = self.dir / ("stderr.%d.txt" % self.starts)
        self.stdout_path = self.dir / ("stdout.%d.txt" % self.starts)
        with open(self.stderr_path, "wb") as err, open(self.stdout_path, "wb") as out:
            self.proc = subprocess.Popen([self.bin, "serve", "-c", str(self.config_path)],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         env=env, cwd=str(self.dir))
        try:
            if not expect_ready:
                return
            deadline = time.monotonic() + READY_TIMEOUT
            got = b""
            while b"READY=1" not in got:
                if self.proc.poll() is not None:
                    raise AssertionError("mailgate serve exited with %s before READY=1; stderr:\n%s"
                                         % (self.proc.returncode, self.stderr()[-4000:]))
                left = deadline - time.monotonic()
                if left <= 0:
                    self.proc.kill()
                    self.proc.wait()
                    raise AssertionError("no READY=1 on NOTIFY_SOCKET within %ss; stderr:\n%s"
                                         % (READY_TIMEOUT, self.stderr()[-4000:]))
                ns.settimeout(min(left, 0.5))
                try:
                    got += ns.recv(4096) + b"\n"
                except socket.timeout:
                    pass
        finally:
            ns.close()
            os.unlink(notify_path)

    def stderr(self, which=None):
        p = self.stderr_path if which is None else self.dir / ("stderr.%d.txt" % which)
        try:
            return p.read_text(errors="replace")
        except (FileNotFoundError, TypeError):
            return ""

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _close_clients(self):
        for c in self.clients:
            c.close()
        self.clients = []

    def check_sanitizers(self):
        text = self.stderr()
        for mark in SANITIZER_MARKS:
            if mark in text:
                i = text.find(mark)
                raise AssertionError("sanitizer report in mailgate's stderr (%s):\n%s"
                                     % (self.stderr_path, text[max(0, i - 200):i + 6000]))

    def stop(self, check=True):
        """SIGTERM, wait, check stderr and the exit status."""
        if self.proc is None:
            return
        self._close_clients()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                if check:
                    raise AssertionError("mailgate did not stop within %ss of SIGTERM" % STOP_TIMEOUT)
        rc = self.proc.returncode
        self.proc = None
        if check:
            self.check_sanitizers()
            assert rc == 0, "mailgate exited with status %s after SIGTERM; stderr:\n%s" % (
                rc, self.stderr()[-3000:])

    def kill(self):
        """SIGKILL (a crash): no drain, no exit checks, but stderr is still checked."""
        self._close_clients()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        self.check_sanitizers()

    def restart(self, kill=False):
        self.kill() if kill else self.stop()
        self.start()

    # ---- clients ----
    def raw_connect(self, timeout=None, nodelay=True):
        c = Client(self.host, self.port, timeout or 15.0, nodelay)
        self.clients.append(c)
        return c

    def connect(self, timeout=None, banner=True):
        """Connect, read the banner, learn this connection's ICID from the log."""
        mark = self.log_mark()
        c = self.raw_connect(timeout)
        if banner:
            c.banner()
            c.icid = self._find_icid(mark)
        return c

    def _find_icid(self, mark):
        def find():
            ids = re.findall(r"New SMTP ICID (\d+) ", self.log_since(mark))
            return ids
        ids = find()
        if not ids:
            # the dedicated ordering test in test_session.py fails for this; here
            # we only need the number, so wait for it
            ids = poll_until(find, 5, what="the 'New SMTP ICID' line of a new connection")
            self.late_connect_log = True
        return int(ids[-1]) if len(ids) == 1 else None

    def assert_serving(self):
        """The server is alive and a new client gets a whole transaction through."""
        assert self.running(), "mailgate is not running (exit %s); stderr:\n%s" % (
            self.proc and self.proc.returncode, self.stderr()[-3000:])
        c = self.connect()
        c.ehlo()
        mid = c.send_message()
        c.quit()
        assert (self.spool / "queue" / str(mid)).exists()
        return mid

    # ---- log ----
    def log_text(self):
        try:
            return self.log_path.read_bytes().decode("utf-8", "surrogateescape")
        except FileNotFoundError:
            return ""

    def log_mark(self):
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, mark=0):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(mark)
                return f.read().decode("utf-8", "surrogateescape")
        except FileNotFoundError:
            return ""

    def log_texts(self, mark=0):
        """The text of each line after '<ctime> Info: ', checking the line format."""
        out = []
        for line in self.log_since(mark).split("\n"):
            if not line:
                continue
            m = LOG_LINE.match(line)
            assert m, "log line not in '<ctime> <Level>: <text>' form: %r" % line
            out.append(m.group(2))
        return out

    def wait_log(self, pattern, mark=0, timeout=10):
        rx = re.compile(pattern, re.M)
        return poll_until(lambda: rx.search(self.log_since(mark)), timeout,
                          what="log line matching %r" % pattern)

    def assert_log(self, pattern, mark=0):
        """The line is there now (it is written before the reply it concerns)."""
        rx = re.compile(pattern, re.M)
        if rx.search(self.log_since(mark)):
            return
        try:
            self.wait_log(pattern, mark, timeout=3)
        except AssertionError:
            raise AssertionError("no log line matching %r; log since mark:\n%s"
                                 % (pattern, self.log_since(mark)[-3000:])) from None
        raise AssertionError("log line %r was written after the reply it concerns" % pattern)

    def assert_failed_logged(self, client, mark, count=None):
        """Each 4xx/5xx leaves 'ICID <n> Receiving Failed: <reason>': at least
        `count` such lines since mark (one per refusal; a server may add one
        more for a 421 that follows a refusal)."""
        icid = client.icid if client is not None and client.icid is not None else r"\d+"
        pat = r"Info: ICID %s Receiving Failed: \S.*$" % icid
        self.assert_log(pat, mark)
        if count is not None:
            n = len(re.findall(pat, self.log_since(mark), re.M))
            assert n >= count, "expected %d 'ICID %s Receiving Failed' lines, found %d:\n%s" % (
                count, icid, n, self.log_since(mark)[-3000:])

    def wait_closed_logged(self, client, mark=0):
        self.wait_log(r"Info: ICID %d close$" % client.icid, mark)

    # ---- spool ----
    @property
    def queue_dir(self):
        return self.spool / "queue"

    @property
    def tmp_dir(self):
        return self.spool / "tmp"

    def queue_mids(self):
        try:
            return sorted(int(p.name) for p in self.queue_dir.iterdir() if p.name.isdigit())
        except FileNotFoundError:
            return []

    def queue_names(self):
        try:
            return sorted(p.name for p in self.queue_dir.iterdir())
        except FileNotFoundError:
            return []

    def tmp_names(self):
        try:
            return sorted(p.name for p in self.tmp_dir.iterdir())
        except FileNotFoundError:
            return []

    def tmp_settled(self, timeout=10):
        """tmp/'s names once the files of aborted messages are gone: the server
        removes them off its event loop (the spool's opener thread), just after
        its reply, so a check right after the reply may still see one. [] unless
        something stays."""
        left = []

        def empty():
            left[:] = self.tmp_names()
            return not left
        try:
            poll_until(empty, timeout, 0.05, "tmp/ to empty")
        except AssertionError:
            pass
        return left

    def spool_file(self, mid):
        p = self.queue_dir / str(mid)
        assert p.exists(), "MID %s acknowledged but %s does not exist (queue holds %s)" % (
            mid, p, self.queue_names())
        return SpoolFile(p)

    # ---- CLI ----
    def cli(self, sub, *args, timeout=60, cwd=None):
        env = dict(os.environ)
        for k, v in SAN_ENV.items():
            env.setdefault(k, v)
        return subprocess.run([self.bin, sub, "-c", str(self.config_path), *args],
                              capture_output=True, timeout=timeout, env=env,
                              cwd=cwd or str(self.dir))

    def queue_list_json(self):
        r = self.cli("queue", "list", "--json")
        assert r.returncode == 0, "queue list --json exited %s: %s" % (r.returncode, r.stderr)
        check_cli_sanitizers(r)
        out = []
        for line in r.stdout.decode().splitlines():
            if line.strip():
                out.append(json.loads(line))
        return out


def check_cli_sanitizers(r):
    err = r.stderr.decode(errors="replace")
    for mark in SANITIZER_MARKS:
        assert mark not in err, "sanitizer report from the mailgate command:\n" + err[-5000:]


class Factory:
    def __init__(self, make_dir):
        self.make_dir = make_dir
        self.servers = []
        self.bin = mailgate_bin()
        self.sockdirs = []

    def settings(self, workdir, sockdir, policy=None, limits=None, listener=None, top=None,
                 hat=None, rat=None, listener_type="private", spool=None, policies=None):
        port = free_port()
        pol = {"action": "relay"}
        pol.update(policy or {})
        lst = {
            "name": "default",
            "listen": ["%s:%d" % (HOST, port)],
            "type": listener_type,
            "hat": hat if hat is not None else [
                {"group": "RELAYLIST", "hosts": ["127.0.0.0/8"], "policy": "RELAYED"}],
        }
        if rat is not None:
            lst["rat"] = rat
        lst.update(listener or {})
        s = {
            "hostname": HOSTNAME,
            "spool": str(spool or (Path(workdir) / "spool")),
            "control": str(Path(sockdir) / "control.sock"),
            "log": {"file": str(Path(workdir) / "mail.log"), "format": "esa"},
            "dns": {"reverse_lookups": False},
        }
        if limits:
            s["limits"] = dict(limits)
        pols = {"RELAYED": pol}
        pols.update(policies or {})
        s["policies"] = pols
        s["listeners"] = [lst]
        s["routes"] = [{"domain": "ALL", "to": [DEAD_ROUTE]}]
        s["delivery"] = {"retry_initial": "1h", "retry_max": "1h"}
        deep_update(s, top)
        s["_port"] = port
        return s

    def __call__(self, start=True, env=None, **kw):
        if not os.path.exists(self.bin):
            pytest.fail("mailgate binary not found at %s (set MAILGATE_BIN or build build-test/)"
                        % self.bin)
        workdir = self.make_dir()
        sockdir = tempfile.mkdtemp(prefix="mgit-")      # AF_UNIX paths must stay short
        self.sockdirs.append(sockdir)
        srv = Server(self, workdir, sockdir, self.settings(workdir, sockdir, **kw))
        srv.env.update(env or {})
        self.servers.append(srv)
        if start:
            srv.start()
        return srv

    def close(self):
        errors = []
        for s in self.servers:
            try:
                s.stop()
            except AssertionError as e:
                errors.append(str(e))
        for d in self.sockdirs:
            shutil.rmtree(d, ignore_errors=True)
        if errors:
            pytest.fail("\n\n".join(errors), pytrace=False)


@pytest.fixture
def mailgate(tmp_path):
    n = [0]

    def make_dir():
        n[0] += 1
        d = tmp_path / ("srv%d" % n[0])
        d.mkdir()
        return d
    f = Factory(make_dir)
    yield f
    f.close()


@pytest.fixture(scope="module")
def mailgate_module(tmp_path_factory):
    f = Factory(lambda: tmp_path_factory.mktemp("srv"))
    yield f
    f.close()


@pytest.fixture(autouse=True)
def _test_deadline():
    """A hard per-test deadline, so a hung server fails one test instead of the run."""
    def on_alarm(signum, frame):
        raise AssertionError("test exceeded its 180 s deadline (hung?)")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(180)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture
def tmpfs(tmp_path):
    """A small real filesystem for full-disk tests; skipped if mounting is not allowed."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % r.stderr.decode(errors="replace").strip())
    yield mnt
    r = subprocess.run(["umount", str(mnt)], capture_output=True)
    if r.returncode != 0:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# ---------------------------------------------------------------- helpers for tests

def unstuff(data):
    """RFC 5321 4.5.2 on CRLF-delimited lines: what the server must store for the
    bytes between the 354 and the final CRLF . CRLF (the terminator excluded)."""
    out = []
    for i, line in enumerate(data.split(b"\r\n")):
        out.append(line[1:] if line.startswith(b".") else line)
    return b"\r\n".join(out)


def stuff(body):
    """Dot-stuff a message (lines are CRLF-delimited) for sending."""
    return b"\r\n".join((b"." + l) if l.startswith(b".") else l for l in body.split(b"\r\n"))
