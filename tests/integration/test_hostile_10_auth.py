"""Hostile input, class 10 of spec/hostile.md: AUTH (CVE-2018-6789).

base64 of every length mod 4, `=`, `*` (cancel), missing or extra NULs, overlong
fields, wrong passwords many times (a delay, then 421 past the limit). The
malformed responses go three ways (hostilelib.py); the last test checks the
server still serves and holds nothing more than before the class.

Each failed AUTH is answered after a fixed delay (1 s): the tests keep failures few
and never measure time."""

import re

import pytest

from hostilelib import WAYS, assert_left_clean, hostile_server, seed_for
from tlsauth import (AUTH_ARGS, AUTH_BAD, AUTH_OK, FAILED, PASS_CHALLENGE, SUCCEEDED,
                     USER_CHALLENGE, USERS, auth_plain_ok, auth_settings, b64, greeted,
                     make_cert, make_users, plain)

BODY = b"Subject: after AUTH\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def srv(mailgate_module, tmp_path_factory):
    d = tmp_path_factory.mktemp("auth")
    env = {"cert": make_cert(d, "cert"), "users": make_users(d / "users", USERS)}
    settings = auth_settings(env, limits={"auth_failure_limit": 3})
    settings["policy"]["max_messages_per_connection"] = 0
    return hostile_server(mailgate_module, **settings)


GOOD = plain("alice", "secret")       # AGFsaWNlAHNlY3JldA==  (20 octets, 2 pad)
assert GOOD.endswith("==") and len(GOOD) % 4 == 0

BAD_RESPONSES = [
    # base64 of every length mod 4
    ("1 mod 4", "A"),
    ("2 mod 4", "AG"),
    ("3 mod 4", "AGF"),
    ("5 octets", "AGFsa"),
    ("padding left off", GOOD.rstrip("=")),
    ("one pad of two", GOOD[:-1]),
    ("a third pad", GOOD + "="),
    ("four pads", GOOD + "===="),
    # '=' misuse
    ("pad first", "=" + GOOD[:-1]),
    ("pad in the middle", GOOD[:8] + "==" + GOOD[10:]),
    ("pad then data", "AA==" + GOOD),
    ("only pads", "===="),
    ("three pads", "A==="),
    # not the alphabet
    ("a bang", "AGFs!WNlAHNlY3JldA=="),
    ("url-safe alphabet", b64(b"\0alice\0s>>?~~").replace("+", "-").replace("/", "_")),
    ("a tab", "AGFs\taWNlAHNlY3JldA=="),
    ("non-ASCII", "AGFs\u00e9WNlAHNlY3Jl"),
    # PLAIN messages with the wrong number of NULs or empty fields
    ("no NUL", b64(b"alicesecret")),
    ("one NUL", b64(b"alice\0secret")),
    ("three NULs, trailing", b64(b"\0alice\0secret\0")),
    ("three NULs, in the password", b64(b"\0alice\0sec\0ret")),
    ("four NULs", b64(b"\0\0alice\0secret")),
    ("empty user", b64(b"\0\0secret")),
    ("empty password", b64(b"\0alice\0")),
    ("only NULs", b64(b"\0\0")),
    ("empty response", "="),
    # overlong fields
    ("overlong user", b64(b"\0" + b"a" * 300 + b"\0secret")),
    ("overlong password", b64(b"\0alice\0" + b"p" * 600)),
    ("overlong authzid", b64(b"z" * 300 + b"\0alice\0secret")),
]
BAD_BYTES = ("a tab", "non-ASCII")


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("form", ["initial", "challenge"])
def test_class10_malformed_plain(srv, form, way):
    """Each is a 501 at once (no credential is checked, nothing counts as a failed
    AUTH), and the session goes on: after all of them, AUTH succeeds."""
    c = greeted(srv)
    mark = srv.log_mark()
    for what, resp in BAD_RESPONSES:
        data = resp.encode("utf-8")
        seed = seed_for(form, what, way)
        if form == "initial":
            c.send(b"AUTH PLAIN " + data + b"\r\n", way, seed)
        else:
            c.cmd("AUTH PLAIN", 334, "")
            c.send(data + b"\r\n", way, seed)
        r = c.reply()
        if form == "initial" and what in BAD_BYTES:
            # a control or 8-bit byte in a command line: the command parser's 501
            # (hostile.md 9) comes first
            assert r.code == 501, "%s %r: %r" % (what, resp, r.raw)
        else:
            assert (r.code, r.text) == (501, AUTH_ARGS), "%s %r: %r" % (what, resp, r.raw)
        c.cmd("NOOP", 250, "ok")
    log = srv.log_since(mark)
    assert "SMTP Auth" not in log, log
    assert len(re.findall(r"ICID %d Receiving Failed" % c.icid, log)) >= len(BAD_RESPONSES)
    # nothing above was a failed attempt: limit 3 is not reached
    auth_plain_ok(c)
    c.quit()


def test_class10_malformed_auth_commands_and_login(srv):
    c = greeted(srv)
    mark = srv.log_mark()
    for line in ("AUTH", "AUTH ", "AUTH PLAIN %s %s" % (GOOD, GOOD), "AUTH PLAIN x y z",
                 "AUTH LOGIN %s %s" % (b64("alice"), b64("secret")), "AUTH PLAIN *x"):
        c.cmd(line, 501, AUTH_ARGS)
    # LOGIN: the user name and the password, each malformed in turn
    for user_resp in ("A", "!!!!", "=", b64(b"ali\0ce"), b64("u" * 300)):
        c.cmd("AUTH LOGIN", 334, USER_CHALLENGE)
        c.cmd(user_resp, 501, AUTH_ARGS)
    for pass_resp in ("AGF", "=", b64(b"sec\0ret"), "Zm9v=Zm9v"):
        c.cmd("AUTH LOGIN", 334, USER_CHALLENGE)
        c.cmd(b64("alice"), 334, PASS_CHALLENGE)
        c.cmd(pass_resp, 501, AUTH_ARGS)
    c.cmd("AUTH LOGIN " + b64(b"\0alice"), 501, AUTH_ARGS)
    assert "SMTP Auth" not in srv.log_since(mark)
    c.cmd("NOOP", 250, "ok")
    c.cmd("AUTH LOGIN", 334, USER_CHALLENGE)
    c.cmd(b64("alice"), 334, PASS_CHALLENGE)
    c.cmd(b64("secret"), 235, AUTH_OK)
    srv.assert_log(SUCCEEDED % (c.icid, "alice", "LOGIN"), mark)
    c.quit()


def test_class10_star_cancels(srv):
    c = greeted(srv)
    mark = srv.log_mark()
    c.cmd("AUTH PLAIN", 334, "")
    c.cmd("*", 501)
    c.cmd("NOOP", 250, "ok")
    c.cmd("AUTH LOGIN", 334, USER_CHALLENGE)
    c.cmd("*", 501)
    c.cmd("AUTH LOGIN", 334, USER_CHALLENGE)
    c.cmd(b64("alice"), 334, PASS_CHALLENGE)
    c.cmd("*", 501)
    assert "SMTP Auth" not in srv.log_since(mark)
    # a cancel is no failed attempt: three of them do not reach auth_failure_limit = 3
    c.cmd("AUTH PLAIN", 334, "")
    c.cmd(GOOD, 235, AUTH_OK)
    c.send_message(body=BODY)
    c.quit()


def test_class10_12288_octet_response_is_a_line(srv):
    c = greeted(srv)
    # valid base64 of a PLAIN message whose password is far too long: exactly 12,288 octets
    resp = b64(b"\0alice\0" + b"p" * (12288 * 3 // 4 - 7))
    assert len(resp) == 12288
    c.cmd("AUTH PLAIN", 334, "")
    mark = srv.log_mark()
    c.send(resp.encode() + b"\r\n")
    r = c.reply()
    assert r.code in (501, 535), r
    # refused for what it says (a password past any limit), not for its length
    why = srv.wait_log(r"ICID %d Receiving Failed: .*$" % c.icid, mark).group(0)
    assert "too long" not in why, why
    c.cmd("NOOP", 250, "ok")
    # an AUTH command line of 12,288 octets is read whole: the mechanism is looked at
    line = "AUTH X-LONG " + "A" * 12276
    assert len(line) == 12288
    c.send(line.encode() + b"\r\n")
    c.expect(504, "#5.5.1 AUTH mechanism X-LONG is not available")
    line = "AUTH PLAIN " + b64(b"\0alice\0" + b"p" * ((12288 - 11) * 3 // 4 - 7))
    assert len(line) == 12287
    c.send(line.encode() + b"\r\n")
    r = c.reply()
    assert r.code in (501, 535), r
    c.cmd("NOOP", 250, "ok")
    # longer responses are refused, and the session stays in step
    for n in (12292, 16384, 100000):
        c.cmd("AUTH PLAIN", 334, "")
        c.send(("A" * n).encode() + b"\r\n")
        r = c.reply()
        assert r.code >= 500, r
        c.cmd("NOOP", 250, "ok")
    c.send(("AUTH X-LONG " + "A" * 12280).encode() + b"\r\n")
    assert c.reply().code >= 500
    c.cmd("NOOP", 250, "ok")
    auth_plain_ok(c)
    c.quit()


def test_class10_client_gone_during_the_check(srv):
    """Clients that close while their credentials are being checked (or a failure is
    delayed): the server goes on (ASan watches). Another client's failed AUTH, answered
    after the same delay, comes after those checks were answered."""
    for resp in (plain("alice", "wrong"), plain("alice", "secret")):
        gone = greeted(srv)
        gone.line("AUTH PLAIN " + resp)
        gone.close()
    c = greeted(srv)
    c.cmd("AUTH PLAIN " + plain("mallory", "x"), 535, AUTH_BAD)
    c.quit()
    srv.assert_serving()


def test_class10_brute_force_421(srv):
    c = greeted(srv)
    mark = srv.log_mark()
    c.cmd("AUTH PLAIN " + plain("alice", "guess1"), 535, AUTH_BAD)
    c.cmd("AUTH LOGIN " + b64("nosuchuser"), 334, PASS_CHALLENGE)
    c.cmd(b64("guess2"), 535, AUTH_BAD)
    c.cmd("AUTH PLAIN " + plain("alice", "guess3"), 535, AUTH_BAD)
    # the third failure reaches the limit: the 421 follows at once, then the close
    c.expect(421, "#4.7.0 Too many failed authentication attempts")
    c.expect_closed()
    for user, mech in (("alice", "PLAIN"), ("nosuchuser", "LOGIN"), ("alice", "PLAIN")):
        srv.assert_log(FAILED % (c.icid, user, mech), mark)
    assert len(re.findall(r"SMTP Auth: \(ICID %d\) failed" % c.icid, srv.log_since(mark))) == 3
    srv.assert_failed_logged(c, mark, count=4)
    srv.wait_closed_logged(c, mark)
    # the server and the account are still there for others
    d = greeted(srv)
    auth_plain_ok(d)
    d.quit()
    srv.assert_serving()


def test_class10_zz_left_clean(srv):
    """The server still serves, and holds no more descriptors or heap than before."""
    assert_left_clean(srv)
