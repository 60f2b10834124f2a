"""A scriptable SMTP server on 127.0.0.x for the delivery tests (stdlib only).

SmtpSink listens on one loopback address, speaks just enough ESMTP to take mail
from mailgate's outbound client, and records what it got byte for byte: each
transaction's envelope and its message (`raw`: the bytes between the 354 and
the final CRLF.CRLF, as sent, still dot-stuffed; `data`: unstuffed). One thread
accepts, one thread serves each connection; every wait has a deadline.

The script maps a step to what the sink does there:
    "GREETING", "EHLO", "HELO", "STARTTLS", "MAIL", "RCPT", "DATA" (the reply to
    DATA), "BODY" (while the message arrives), "DOT" (the reply to the end of
    data), "RSET", "QUIT"
and each value is a reply line ("451 4.3.0 try again later"; a multi-line reply
as a list of lines joined with "\\n"), or one of the actions
    HANG   read and discard everything, never answer, until the peer closes or
           the sink is released (sink.release()) or stopped
    DROP   close the connection at once (at "BODY": once some of the message
           has arrived, so it is cut mid-DATA)
A value may also be a list, taken in turn each time the step is reached in
the sink's life (the last one repeats: ["451 4.3.0 later", "250 ok"] is a 451
then 250 for ever), or a callable(arg) returning one (arg: the command's
argument, e.g. the RCPT's address). Steps not in the script get the usual 2xx.
A transaction is recorded when its end of data got a 2xx.

With tls=(certificate file, key file) the sink offers STARTTLS; the step
"HANDSHAKE" set to BADTLS answers the ClientHello with bytes that are not TLS.
"""

import socket
import ssl
import threading
import time

HANG = "HANG"
DROP = "DROP"
BADTLS = "BADTLS"
CAPS = ("PIPELINING", "8BITMIME", "SIZE 52428800", "ENHANCEDSTATUSCODES")
DEFAULTS = {
    "MAIL": "250 2.1.0 sender ok",
    "RCPT": "250 2.1.5 recipient ok",
    "DATA": "354 go ahead",
    "DOT": "250 2.0.0 queued as %(n)d",
    "RSET": "250 2.0.0 reset",
    "QUIT": "221 2.0.0 bye",
}


def unstuff(raw):
    """RFC 5321 4.5.2: a leading dot removed from every line."""
    lines = raw.split(b"\r\n")
    return b"\r\n".join(l[1:] if l.startswith(b".") else l for l in lines)


class Message:
    def __init__(self, conn, helo, sender, params, rcpts, raw, tls=None):
        self.conn = conn              # the sink's connection number, from 1
        self.helo = helo
        self.tls = tls                # the TLS version it came over ("TLSv1.3"), or None
        self.sender = sender          # without <>
        self.params = params          # the MAIL FROM parameters, e.g. "BODY=8BITMIME SIZE=42"
        self.rcpts = rcpts            # the accepted recipients, without <>
        self.raw = raw                # as sent (dot-stuffed), the terminator excluded
        self.data = unstuff(raw)

    def __repr__(self):
        return "Message(conn=%d, from=%r, to=%r, %d bytes)" % (
            self.conn, self.sender, self.rcpts, len(self.data))


class SmtpSink:
    def __init__(self, script=None, host="127.0.0.1", port=0, name="sink.test.example",
                 tls=None):
        assert host.startswith("127."), "the sink only ever listens on loopback"
        self.host = host
        self.tls_ctx = None
        if tls is not None:
            self.tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls_ctx.load_cert_chain(*tls)
        self.name = name
        self.script = dict(script or {})
        self.messages = []            # Message, in the order their DATA was accepted
        self.transcript = []          # (conn, "C"|"S", line) in order
        self.connections = 0
        self.closed = 0               # connections over (either side closed)
        self.max_open = 0             # the most connections open at once
        self.counts = {}              # step -> times reached
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._release = threading.Event()
        self._conns = set()
        self._threads = []
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind((host, port))
        self.port = self._lsock.getsockname()[1]

    # ---- life ----
    def start(self):
        self._lsock.listen(64)
        self._lsock.settimeout(0.1)
        t = threading.Thread(target=self._accept_loop, name="smtpsink", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        self._release.set()
        try:
            self._lsock.close()
        except OSError:
            pass
        with self._cv:
            conns = list(self._conns)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def route(self):
        """The route target for this sink: "127.0.0.1:PORT"."""
        return "%s:%d" % (self.host, self.port)

    def set(self, step, value):
        """Change the script from now on (counts go on)."""
        with self._cv:
            self.script[step] = value

    def release(self):
        """Hanging connections close (as if the server gave up)."""
        self._release.set()

    # ---- waiting ----
    def wait(self, fn, timeout, what="the sink's condition"):
        """fn() under the sink's lock until truthy, with a deadline (no sleep)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                v = fn()
                if v:
                    return v
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out after %ss waiting for %s; transcript:\n%s"
                                         % (timeout, what, self.dump()))
                self._cv.wait(left)

    def wait_messages(self, n, timeout=30):
        return self.wait(lambda: len(self.messages) >= n and list(self.messages), timeout,
                         "%d message(s) at the sink" % n)

    def wait_count(self, step, n, timeout=30):
        return self.wait(lambda: self.counts.get(step, 0) >= n, timeout,
                         "step %s reached %d time(s)" % (step, n))

    def wait_closed(self, n, timeout=30):
        return self.wait(lambda: self.closed >= n, timeout, "%d connection(s) closed" % n)

    def dump(self):
        return "\n".join("%d %s: %r" % t for t in self.transcript[-60:])

    # ---- serving ----
    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                s, _ = self._lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            with self._cv:
                self.connections += 1
                n = self.connections
                self._conns.add(s)
                self.max_open = max(self.max_open, self.connections - self.closed)
            t = threading.Thread(target=self._serve, args=(s, n), name="smtpsink-%d" % n,
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def _step(self, step, arg=""):
        """What the script says for this step now (and count it)."""
        with self._cv:
            k = self.counts.get(step, 0)
            self.counts[step] = k + 1
            self._cv.notify_all()
            v = self.script.get(step)
        if isinstance(v, list):
            v = v[min(k, len(v) - 1)] if v else None
        if callable(v):
            v = v(arg)
        return v

    def _note(self, conn, who, line):
        with self._cv:
            self.transcript.append((conn, who, line))

    def _serve(self, s, conn):
        s.settimeout(0.2)
        st = _Conn(self, s, conn)
        try:
            st.run()
        except (OSError, _Closed):
            pass
        finally:
            # counted before the close: the peer cannot open its next connection
            # before this one is counted as over (max_open stays exact)
            with self._cv:
                self._conns.discard(s)
                self.closed += 1
                self._cv.notify_all()
            for sk in (st.sock, s):       # st.sock: the TLS socket after STARTTLS
                try:
                    sk.close()
                except OSError:
                    pass


class _Closed(Exception):
    pass


class _Conn:
    def __init__(self, sink, sock, n):
        self.sink = sink
        self.sock = sock
        self.n = n
        self.buf = b""
        self.helo = None
        self.tls = None
        self.reset()

    def reset(self):
        self.sender = None
        self.params = ""
        self.rcpts = []

    def recv(self):
        while True:
            if self.sink._stop.is_set():
                raise _Closed()
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not d:
                raise _Closed()
            return d

    def line(self):
        while b"\r\n" not in self.buf:
            self.buf += self.recv()
        line, self.buf = self.buf.split(b"\r\n", 1)
        self.sink._note(self.n, "C", line)
        return line

    def hang(self):
        """Say nothing; read until the peer gives up, or the sink lets go."""
        while not self.sink._release.is_set():
            try:
                if not self.sock.recv(65536):
                    break
            except socket.timeout:
                continue
        raise _Closed()

    def act(self, value, default, **fmt):
        """Send the reply for a step; the code sent (0 for none)."""
        if value is None:
            value = default
        if value == HANG:
            self.hang()
        if value == DROP:
            raise _Closed()
        text = value % fmt if fmt and "%(" in value else value
        lines = text.split("\n")
        out = b""
        for i, l in enumerate(lines):
            sep = " " if i == len(lines) - 1 else "-"
            out += (l[:3] + sep + l[4:]).encode() + b"\r\n" if len(l) > 3 else \
                (l + "\r\n").encode()
            self.sink._note(self.n, "S", l)
        self.sock.sendall(out)
        return int(text[:3])

    def starttls(self):
        """RFC 3207: what came after STARTTLS is dropped; a new EHLO is due."""
        sink = self.sink
        self.buf = b""
        if sink._step("HANDSHAKE") == BADTLS:
            self.sock.sendall(b"this is not a TLS handshake\r\n" * 4)
            raise _Closed()
        self.sock.settimeout(10)
        try:
            self.sock = sink.tls_ctx.wrap_socket(self.sock, server_side=True)
        except (ssl.SSLError, OSError):
            raise _Closed()
        self.sock.settimeout(0.2)
        self.tls = self.sock.version()
        self.helo = None
        self.reset()
        sink._note(self.n, "S", "<TLS %s>" % self.tls)

    def run(self):
        sink = self.sink
        self.act(sink._step("GREETING"), "220 %s ESMTP sink" % sink.name)
        while True:
            line = self.line()
            verb, _, arg = line.decode("ascii", "replace").partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                self.helo = arg
                self.reset()
                caps = list(CAPS) + (["STARTTLS"] if sink.tls_ctx and not self.tls else [])
                self.act(sink._step("EHLO", arg),
                         "\n".join(["250 %s" % sink.name] + ["250 " + c for c in caps]))
            elif verb == "STARTTLS" and sink.tls_ctx is not None and not self.tls:
                if self.act(sink._step("STARTTLS"), "220 2.0.0 ready") == 220:
                    self.starttls()
            elif verb == "HELO":
                self.helo = arg
                self.reset()
                self.act(sink._step("HELO", arg), "250 %s" % sink.name)
            elif verb == "MAIL":
                path, _, params = arg.partition(":")[2].partition(" ")
                code = self.act(sink._step("MAIL", path), DEFAULTS["MAIL"])
                if code < 300:
                    self.sender = path.strip("<>")
                    self.params = params
            elif verb == "RCPT":
                addr = arg.partition(":")[2].strip().split(" ")[0].strip("<>")
                code = self.act(sink._step("RCPT", addr), DEFAULTS["RCPT"])
                if code < 300:
                    self.rcpts.append(addr)
            elif verb == "DATA":
                if self.sender is None or not self.rcpts:
                    self.act("503 5.5.1 no valid recipients", None)
                    continue
                if self.act(sink._step("DATA"), DEFAULTS["DATA"]) != 354:
                    self.reset()
                    continue
                self.data()
            elif verb == "RSET":
                self.reset()
                self.act(sink._step("RSET"), DEFAULTS["RSET"])
            elif verb == "NOOP":
                self.act("250 2.0.0 ok", None)
            elif verb == "QUIT":
                self.act(sink._step("QUIT"), DEFAULTS["QUIT"])
                raise _Closed()
            else:
                self.act("502 5.5.2 not implemented", None)

    def data(self):
        sink = self.sink
        body = sink._step("BODY")
        if body in (HANG, DROP):
            # only once part of the message is here: the cut falls inside it
            while not self.buf:
                self.buf += self.recv()
            self.act(body, None)
        while True:
            if self.buf.startswith(b".\r\n"):
                raw, self.buf = b"", self.buf[3:]
                break
            end = self.buf.find(b"\r\n.\r\n")
            if end != -1:
                # the CRLF before the dot belongs to the message
                raw, self.buf = self.buf[:end + 2], self.buf[end + 5:]
                break
            self.buf += self.recv()
        sink._note(self.n, "C", "<%d bytes of message>" % len(raw))
        with sink._cv:
            n = len(sink.messages) + 1
        code = self.act(sink._step("DOT"), DEFAULTS["DOT"], n=n)
        if code < 300:
            with sink._cv:
                sink.messages.append(Message(self.n, self.helo, self.sender, self.params,
                                             list(self.rcpts), raw, self.tls))
                sink._cv.notify_all()
        self.reset()
