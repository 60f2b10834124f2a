"""A raw SMTP client for the integration tests.

It speaks bytes, never interprets them more than needed: `send()` writes exactly
what it is given (optionally split in several writes), `reply()` reads one whole
reply (all of its lines) and checks it is well formed. Every read has a deadline,
so a server that says nothing makes a test fail instead of hanging.
"""

import random
import re
import select
import socket
import threading
import time

DEFAULT_TIMEOUT = 15.0          # ASan makes everything slower; never a timing assertion

REPLY_LINE = re.compile(rb"^(\d{3})([ -])(.*)\r\n$", re.S)
MID_RE = re.compile(r"^ok: Message (\d+) accepted$")


class ConnectionClosed(AssertionError):
    """The server closed the connection while a reply was expected."""


class Reply:
    def __init__(self, code, lines, raw):
        self.code = code            # int
        self.lines = lines          # text of each line after "NNN-" / "NNN "
        self.raw = raw              # the bytes as received, CRLFs included

    @property
    def text(self):
        return "\n".join(self.lines)

    @property
    def first(self):
        """The first line as the server wrote it, without CRLF: '250 ok'."""
        return self.raw.split(b"\r\n", 1)[0].decode("ascii", "replace")

    @property
    def full(self):
        return [l.decode("ascii", "replace")
                for l in self.raw.split(b"\r\n") if l]

    @property
    def mid(self):
        m = MID_RE.match(self.lines[-1]) if self.code == 250 else None
        return int(m.group(1)) if m else None

    def __repr__(self):
        return "Reply(%r)" % self.raw

    __str__ = __repr__


def split_chunks(data, way, seed=None):
    """Cut data into the writes of one sending 'way'.

    one    - a single write
    bytes  - one byte per write (for big payloads: byte by byte over the first
             and last 2 KiB, the middle in one write, so buffer edges at both
             ends are still crossed one byte at a time)
    random - random cut points from random.Random(seed)
    """
    if way == "one" or len(data) <= 1:
        return [data]
    if way == "bytes":
        if len(data) <= 8192:
            return [data[i:i + 1] for i in range(len(data))]
        head, mid, tail = data[:2048], data[2048:-2048], data[-2048:]
        return ([head[i:i + 1] for i in range(len(head))] + [mid] +
                [tail[i:i + 1] for i in range(len(tail))])
    if way == "random":
        rng = random.Random(seed)
        sizes = [1, 2, 3, 5, 7, 13, 64, 511, 512, 513, 1000, 1024, 4095, 4096, 4097,
                 8192, 65535, 65536]
        out, i = [], 0
        while i < len(data):
            if rng.random() < 0.5:
                n = rng.choice(sizes)
            else:
                n = rng.randint(1, max(1, min(len(data) - i, 70000)))
            out.append(data[i:i + n])
            i += n
        return out
    raise ValueError(way)


class Client:
    def __init__(self, host, port, timeout=DEFAULT_TIMEOUT, nodelay=True):
        self.host, self.port = host, port
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        if nodelay:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.closed_by_peer = False
        self.icid = None
        self.transcript = []        # ("C"|"S", bytes)
        self._bg = None

    # ---- writing ----
    def send(self, data, way="one", seed=None):
        if isinstance(data, str):
            data = data.encode()
        self.transcript.append(("C", data))
        for chunk in split_chunks(data, way, seed):
            self.sock.sendall(chunk)

    def line(self, s, way="one", seed=None):
        if isinstance(s, str):
            s = s.encode()
        self.send(s + b"\r\n", way, seed)

    def send_background(self, data, way="one", seed=None):
        """sendall from a thread, for inputs so big that the replies must be
        read while they are being sent. join_background() returns the error, if any."""
        if isinstance(data, str):
            data = data.encode()
        chunks = split_chunks(data, way, seed)
        result = {}

        def run():
            try:
                for c in chunks:
                    self.sock.sendall(c)
            except OSError as e:            # the server may close early: the test decides
                result["error"] = e

        self._bg = (threading.Thread(target=run, daemon=True), result)
        self._bg[0].start()

    def join_background(self, timeout=60):
        t, result = self._bg
        t.join(timeout)
        assert not t.is_alive(), "the background sender is still blocked after %ss" % timeout
        return result.get("error")

    # ---- reading ----
    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        r, _, _ = select.select([self.sock], [], [], remaining)
        if not r:
            raise TimeoutError
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed_by_peer = True
            return False
        self.buf += data
        return True

    def reply(self, timeout=None):
        """Read one complete reply (every line of a multi-line one)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        lines, raw, code = [], b"", None
        while True:
            nl = self.buf.find(b"\n")
            while nl < 0:
                try:
                    ok = self._fill(deadline)
                except TimeoutError:
                    raise AssertionError("no complete reply within %ss (have %r%s)"
                                         % (timeout or self.timeout, raw,
                                            self.buf[:300])) from None
                if not ok:
                    raise ConnectionClosed("connection closed while a reply was expected "
                                           "(partial: %r)" % (raw + self.buf))
                nl = self.buf.find(b"\n")
            ln, self.buf = self.buf[:nl + 1], self.buf[nl + 1:]
            raw += ln
            m = REPLY_LINE.match(ln)
            assert m, "malformed reply line %r (a reply line is NNN, ' ' or '-', text, CRLF)" % ln
            assert all(0x20 <= b <= 0x7e for b in m.group(3)), \
                "reply line holds a non-printable byte: %r" % ln
            c = int(m.group(1))
            assert code is None or c == code, "code changes inside a multi-line reply: %r" % raw
            code = c
            lines.append(m.group(3).decode("ascii"))
            if m.group(2) == b" ":
                r = Reply(code, lines, raw)
                self.transcript.append(("S", raw))
                return r

    def replies(self, n, timeout=None):
        return [self.reply(timeout) for _ in range(n)]

    def expect(self, code, text=None, timeout=None):
        """Read a reply; check its code and, if given, its exact text (last line)
        or, for a compiled regex, that it matches the whole text."""
        r = self.reply(timeout)
        assert r.code == code, "expected %s %s, got %r" % (code, text or "", r.raw)
        if text is not None:
            if isinstance(text, re.Pattern):
                assert text.fullmatch(r.text), "reply %r does not match %r" % (r.raw, text.pattern)
            else:
                assert r.text == text, "expected %r, got %r" % ("%d %s" % (code, text), r.raw)
        return r

    def cmd(self, line, code=None, text=None, way="one", seed=None):
        self.line(line, way, seed)
        if code is None:
            return self.reply()
        return self.expect(code, text)

    def read_some(self, timeout=None):
        """Wait for data and return what one recv gives (for the one-flush check)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        if self.buf:
            b, self.buf = self.buf, b""
            return b
        try:
            if not self._fill(deadline):
                return b""
        except TimeoutError:
            raise AssertionError("nothing received within %ss" % (timeout or self.timeout)) from None
        b, self.buf = self.buf, b""
        return b

    def unread(self, data):
        self.buf = data + self.buf

    def expect_closed(self, timeout=None):
        """The server closes the connection: nothing more arrives, then EOF."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            assert not self.buf, "expected the connection to close, got more data: %r" % self.buf[:300]
            try:
                ok = self._fill(deadline)
            except TimeoutError:
                raise AssertionError("the server did not close the connection within %ss"
                                     % (timeout or self.timeout)) from None
            if not ok:
                return

    def expect_silence(self, timeout):
        """Nothing arrives for `timeout` seconds (a blocking read that must time out)."""
        assert not self.buf, "unexpected data: %r" % self.buf[:300]
        r, _, _ = select.select([self.sock], [], [], timeout)
        if r:
            data = self.sock.recv(65536, socket.MSG_PEEK)
            assert False, "expected silence, got %r" % data[:300]

    # ---- SMTP conveniences ----
    def banner(self, host="mx.test.example"):
        return self.expect(220, "%s ESMTP" % host)

    def ehlo(self, name="client.test.example"):
        self.line("EHLO " + name)
        r = self.reply()
        assert r.code == 250, r
        return r

    def helo(self, name="client.test.example"):
        return self.cmd("HELO " + name, 250)

    def mail(self, sender, params="", code=250):
        line = "MAIL FROM:<%s>" % sender + ((" " + params) if params else "")
        return self.cmd(line, code)

    def rcpt(self, rcpt, code=250):
        return self.cmd("RCPT TO:<%s>" % rcpt, code)

    def data(self, message, way="one", seed=None, timeout=None):
        """DATA, wait for 354, send message (raw bytes, must include the final
        CRLF . CRLF), return the reply to the end of data."""
        self.cmd("DATA", 354, "go ahead")
        self.send(message, way, seed)
        return self.reply(timeout)

    def send_message(self, sender="sender@test.example", rcpts=("rcpt@test.example",),
                     body=b"Subject: test\r\n\r\nhello\r\n", way="one", seed=None):
        """A whole transaction; body is the message without the terminator.
        Returns the MID of the 250."""
        self.mail(sender)
        for r in rcpts:
            self.rcpt(r)
        rep = self.data(body + b".\r\n" if body.endswith(b"\r\n") or body == b""
                        else body + b"\r\n.\r\n", way, seed)
        assert rep.code == 250 and rep.mid is not None, \
            "expected 250 ok: Message <MID> accepted, got %r" % rep.raw
        return rep.mid

    def quit(self):
        self.cmd("QUIT", 221)
        self.expect_closed()
        self.close()

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)     # wakes a background sender
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
