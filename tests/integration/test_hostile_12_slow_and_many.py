"""Hostile input, class 12 of spec/hostile.md: slow and many.

One byte every so often (the per-command timeout is not restarted by a byte, only
by a whole command; the connection time ends a client that keeps sending whole
commands), connection floods past the per-host limit (the right 421, other
clients still served), non-SMTP openers (`GET /`, `CONNECT`, a TLS ClientHello on
the plaintext port). The openers go three ways (hostilelib.py); the drip is the
one-byte way by nature. The last test checks each server still serves and holds
nothing more than before the class.

The drips wait on the server's silence (expect_silence: a select with a timeout
that fails if the server answers early), never on a bare sleep."""

import ssl

import pytest

from conftest import HOSTNAME
from hatlib import connect_from, wait_closes
from hostilelib import WAYS, assert_left_clean, hostile_server, seed_for

NOT_RECOGNIZED = b"500 #5.5.1 command not recognized\r\n"
FROM_HOST = b"421 #4.4.5 Too many connections from your host\r\n"


@pytest.fixture(scope="module")
def srv(mailgate_module):
    return hostile_server(mailgate_module,
                          policy={"max_messages_per_connection": 0,
                                  "max_connections_per_host": 5},
                          limits={"bad_command_limit": 4})


@pytest.fixture(scope="module")
def srv_cmd(mailgate_module):
    """A short per-command timeout."""
    return hostile_server(mailgate_module, limits={"command_timeout": "2s"})


@pytest.fixture(scope="module")
def srv_life(mailgate_module):
    """A short connection time (the command timeout far away)."""
    return hostile_server(mailgate_module,
                          limits={"max_connection_time": "3s", "command_timeout": "5m"})


# ---------------------------------------------------------------- slow

def test_class12_drip_within_a_command_times_out(srv_cmd):
    """A byte every half second never completes a line: the per-command timeout
    (2 s) runs from the last whole command, so the client is cut off, not kept."""
    s = srv_cmd
    c = s.connect()
    c.ehlo()
    mark = s.log_mark()
    for b in b"NOOP NOOP NOOP NOOP NOOP NOOP NOOP NOOP NOOP NOOP NOOP NOOP":
        c.send(bytes([b]))
        try:
            c.expect_silence(0.5)
        except AssertionError:
            break
    r = c.reply(timeout=20)
    assert r.raw == b"421 Timed out waiting for command, disconnecting\r\n", r
    c.expect_closed()
    s.assert_failed_logged(c, mark, count=1)
    s.wait_closed_logged(c, mark)


def test_class12_whole_commands_forever_end_at_the_connection_time(srv_life):
    """A client that keeps the per-command timer happy with a NOOP every quarter
    second is ended by max_connection_time (3 s), between two commands."""
    s = srv_life
    c = s.connect()
    c.ehlo()
    mark = s.log_mark()
    for _ in range(200):
        c.line("NOOP")
        r = c.reply(timeout=20)
        if r.code != 250:
            break
        try:
            c.expect_silence(0.25)
        except AssertionError:
            r = c.reply()
            break
    assert r.raw == b"421 Exceeded allowable connection time\r\n", r
    c.expect_closed()
    s.assert_failed_logged(c, mark, count=1)
    s.wait_closed_logged(c, mark)


# ---------------------------------------------------------------- non-SMTP openers

OPENERS = {
    "http-get": b"GET / HTTP/1.0\r\n",
    "http-post": b"POST /cgi-bin/x HTTP/1.1\r\n",
    "proxy-connect": b"CONNECT mx.example.com:25 HTTP/1.1\r\n",
    "proxy-v1": b"PROXY TCP4 192.0.2.1 127.0.0.1 5555 25\r\n",
}


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("opener", sorted(OPENERS))
def test_class12_non_smtp_opener(srv, opener, way):
    """Not a command: 500, and the session stays in step (a QUIT still works)."""
    c = srv.connect()
    mark = srv.log_mark()
    c.send(OPENERS[opener], way, seed_for(opener, way))
    assert c.reply().raw == NOT_RECOGNIZED
    srv.assert_failed_logged(c, mark, count=1)
    c.quit()


@pytest.mark.parametrize("way", WAYS)
def test_class12_http_request_ends_at_the_bad_command_limit(srv, way):
    """A whole HTTP request is a run of unknown commands: the bad-command limit (4)
    ends it with the reference's 421, not an answer per header forever."""
    c = srv.connect()
    request = (b"GET / HTTP/1.1\r\nHost: mx.example.com\r\nUser-Agent: probe\r\n"
               b"Accept: */*\r\nConnection: close\r\nX-More: 1\r\n\r\n")
    # the server closes before the last lines arrive: send from a thread
    c.send_background(request, way, seed_for("http", way))
    codes = []
    while True:
        r = c.reply()
        codes.append(r.code)
        if r.code == 421:
            break
        assert r.raw == NOT_RECOGNIZED, r
    assert codes == [500, 500, 500, 500, 421], codes
    c.expect_closed()
    c.join_background()


def client_hello_bytes():
    """The first flight of a real TLS client: a ClientHello record, nothing sent."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=HOSTNAME)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


@pytest.mark.parametrize("way", WAYS)
def test_class12_client_hello_on_a_plaintext_listener(srv, way):
    """A TLS ClientHello where a command belongs (a client that wanted implicit TLS)
    gets 500 at once and the close, not a wait for the command timeout."""
    hello = client_hello_bytes()
    assert hello[:2] == b"\x16\x03"
    c = srv.connect()
    mark = srv.log_mark()
    # the record is known by its first bytes: the server may close before the rest
    c.send_background(hello, way, seed_for("client-hello", way))
    r = c.reply(timeout=30)
    assert r.raw == NOT_RECOGNIZED, r
    c.expect_closed()
    c.join_background()
    srv.wait_log(r"Info: ICID %d Receiving Failed: .*TLS handshake on a plaintext port" %
                 c.icid, mark)


# ---------------------------------------------------------------- many

def test_class12_flood_from_one_host(srv):
    """60 connections at once from one host (limit 5): five are served, the rest get
    the per-host 421 at once, and every one of them is closed again."""
    mark = srv.log_mark()
    held, refused = [], 0
    for _ in range(60):
        c = connect_from(srv, "127.0.0.7")
        r = c.reply()
        if r.code == 220:
            held.append(c)
        else:
            assert r.raw == FROM_HOST, r
            c.expect_closed()
            c.close()
            refused += 1
    assert (len(held), refused) == (5, 55)
    # another host is served meanwhile, and so is every one held
    other = connect_from(srv, "127.0.0.8")
    assert other.reply().code == 220
    other.ehlo()
    other.quit()
    for c in held:
        c.ehlo()
        c.cmd("NOOP", 250, "ok")
        c.close()           # no QUIT: the server notices the close itself
    wait_closes(srv, mark, 61)


def test_class12_zz_left_clean(srv, srv_cmd, srv_life):
    """Each server still serves, and holds no more descriptors or heap than before."""
    assert_left_clean(srv, srv_cmd, srv_life)
