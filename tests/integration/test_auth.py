"""SMTP AUTH (issue 4): replies.md's AUTH replies under their conditions, hostile.md 10,
logs.md's 'SMTP Auth' lines, the failure delay and the 421, relaying for an
authenticated client; with the raw client, smtplib and swaks.

Each failed AUTH is answered after a fixed delay (1 s): the tests keep failures few
and never measure time. Only 127.0.0.1; no sleeps."""

import re
import smtplib
import subprocess

import pytest

from conftest import HOST
from tlsauth import (CLIENT_NAME, b64, client_ctx, ehlo_keywords, make_cert, make_users, plain,
                     starttls, tls_session)

USERS = {"alice": "secret", "bob": "correct horse: battery staple"}
AUTH_OK = "#2.7.0 Authentication succeeded"
AUTH_BAD = "#5.7.8 Authentication credentials invalid"
AUTH_ARGS = "#5.5.4 Invalid arguments to AUTH command"
SUCCEEDED = r"Info: SMTP Auth: \(ICID %d\) succeeded for user: %s using AUTH mechanism: %s$"
FAILED = r"Info: SMTP Auth: \(ICID %d\) failed for user: %s using AUTH mechanism: %s$"
USER_CHALLENGE = "VXNlcm5hbWU6"          # base64 "Username:"
PASS_CHALLENGE = "UGFzc3dvcmQ6"          # base64 "Password:"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("auth")
    return {"cert": make_cert(d, "cert"), "users": make_users(d / "users", USERS)}


def auth_server(mailgate, env, policy=None, limits=None, **kw):
    """tls preferred, auth preferred; by default AUTH is allowed in the clear, so
    the plain raw client can talk to it."""
    pol = {"tls": "preferred", "auth": "preferred", "auth_requires_tls": False}
    pol.update(policy or {})
    lim = {"bad_command_limit": 100, "auth_failure_limit": 3}
    lim.update(limits or {})
    top = {"tls": env["cert"].conf, "auth": {"users": env["users"]}}
    return mailgate(policy=pol, limits=lim, top=top, **kw)


def greeted(srv):
    c = srv.connect()
    c.ehlo(CLIENT_NAME)
    return c


def send_message(c, rcpt="rcpt@test.example"):
    c.mail("sender@test.example")
    c.rcpt(rcpt)
    rep = c.data(b"Subject: after AUTH\r\n\r\nhello\r\n.\r\n")
    assert rep.code == 250 and rep.mid is not None, rep
    return rep.mid


def auth_plain_ok(c, user="alice"):
    c.cmd("AUTH PLAIN " + plain(user, USERS[user]), 235, AUTH_OK)


# ---------------------------------------------------------------- EHLO

@pytest.mark.parametrize("auth,requires_tls,in_clear,in_tls", [
    ("off", False, False, False),
    ("preferred", False, True, True),
    ("preferred", True, False, True),
    ("required", True, False, True),
])
def test_ehlo_offers_auth_only_where_offered(mailgate, env, auth, requires_tls, in_clear,
                                             in_tls):
    srv = auth_server(mailgate, env, policy={"auth": auth, "auth_requires_tls": requires_tls})
    c = srv.connect()
    r = c.ehlo(CLIENT_NAME)
    assert ("AUTH PLAIN LOGIN" in ehlo_keywords(r)) == in_clear, r
    assert not [k for k in ehlo_keywords(r) if k.startswith("AUTH") and k != "AUTH PLAIN LOGIN"]
    starttls(c)
    r = c.ehlo(CLIENT_NAME)
    assert ("AUTH PLAIN LOGIN" in ehlo_keywords(r)) == in_tls, r
    c.quit()


# ---------------------------------------------------------------- refusals

def test_encryption_required(mailgate, env):
    srv = auth_server(mailgate, env, policy={"auth_requires_tls": True})
    c = greeted(srv)
    mark = srv.log_mark()
    c.cmd("AUTH PLAIN " + plain("alice", "secret"), 538, "#5.7.11 Encryption required")
    c.cmd("AUTH LOGIN", 538, "#5.7.11 Encryption required")
    srv.assert_failed_logged(c, mark, count=2)
    assert "SMTP Auth" not in srv.log_since(mark)
    starttls(c)
    c.ehlo(CLIENT_NAME)
    mark = srv.log_mark()
    auth_plain_ok(c)
    srv.assert_log(SUCCEEDED % (c.icid, "alice", "PLAIN"), mark)
    send_message(c)
    c.quit()


def test_auth_not_available(mailgate, env):
    srv = auth_server(mailgate, env, policy={"auth": "off"})
    c = greeted(srv)
    mark = srv.log_mark()
    c.cmd("AUTH PLAIN " + plain("alice", "secret"), 503, "#5.3.3 AUTH not available")
    starttls(c)
    c.ehlo(CLIENT_NAME)
    c.cmd("AUTH LOGIN", 503, "#5.3.3 AUTH not available")
    srv.assert_failed_logged(c, mark, count=2)
    assert "SMTP Auth" not in srv.log_since(mark)
    c.quit()


def test_auth_sequence_refusals(mailgate, env):
    srv = auth_server(mailgate, env)
    c = greeted(srv)
    mark = srv.log_mark()
    c.mail("sender@test.example")
    c.cmd("AUTH PLAIN " + plain("alice", "secret"), 503,
          "#5.5.0 AUTH not permitted during a mail transaction")
    c.rcpt("rcpt@test.example")
    c.cmd("AUTH LOGIN", 503, "#5.5.0 AUTH not permitted during a mail transaction")
    c.cmd("RSET", 250, "ok")
    c.cmd("AUTH CRAM-MD5", 504, "#5.5.1 AUTH mechanism CRAM-MD5 is not available")
    c.cmd("AUTH cram-md5 " + b64("alice 0123456789abcdef0123456789abcdef"), 504,
          "#5.5.1 AUTH mechanism cram-md5 is not available")
    srv.assert_failed_logged(c, mark, count=4)
    assert "SMTP Auth" not in srv.log_since(mark)
    auth_plain_ok(c)
    mark = srv.log_mark()
    c.cmd("AUTH PLAIN " + plain("alice", "secret"), 503, "#5.5.0 Already authenticated")
    c.cmd("AUTH LOGIN", 503, "#5.5.0 Already authenticated")
    srv.assert_failed_logged(c, mark, count=2)
    send_message(c)
    c.quit()


def test_auth_required(mailgate, env):
    srv = auth_server(mailgate, env, policy={"auth": "required"})
    c = greeted(srv)
    mark = srv.log_mark()
    c.cmd("MAIL FROM:<sender@test.example>", 530, "Authentication required")
    srv.assert_failed_logged(c, mark)
    c.cmd("MAIL FROM:<sender@test.example> AUTH=<>", 530, "Authentication required")
    auth_plain_ok(c)
    mid = send_message(c)
    c.quit()
    assert mid in srv.queue_mids()


def test_mail_auth_parameter(mailgate, env):
    srv = auth_server(mailgate, env)
    c = greeted(srv)
    c.mail("sender@test.example", "AUTH=<>")
    c.cmd("RSET", 250, "ok")
    c.mail("sender@test.example", "AUTH=alice+40test.example")
    c.cmd("RSET", 250, "ok")
    # and from an authenticated client (RFC 4954 5), whose EHLO may no longer list AUTH
    auth_plain_ok(c)
    c.ehlo(CLIENT_NAME)
    c.mail("sender@test.example", "AUTH=alice+40test.example")
    c.cmd("RSET", 250, "ok")
    c.quit()
    off = auth_server(mailgate, env, policy={"auth": "off"})
    c = greeted(off)
    mark = off.log_mark()
    c.cmd("MAIL FROM:<sender@test.example> AUTH=<>", 504, "Command parameter AUTH unrecognized")
    off.assert_failed_logged(c, mark)
    c.quit()


def test_mail_auth_parameter_where_auth_is_not_offered_yet(mailgate, env):
    srv = auth_server(mailgate, env, policy={"auth_requires_tls": True})
    c = greeted(srv)
    c.cmd("MAIL FROM:<sender@test.example> AUTH=<>", 504, "Command parameter AUTH unrecognized")
    c.quit()


# ---------------------------------------------------------------- hostile.md 10: malformed

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


@pytest.mark.parametrize("form", ["initial", "challenge"])
def test_malformed_plain(mailgate, env, form):
    """Each is a 501 at once (no credential is checked, nothing counts as a failed
    AUTH), and the session goes on: after all of them, AUTH succeeds."""
    srv = auth_server(mailgate, env)
    c = greeted(srv)
    mark = srv.log_mark()
    for what, resp in BAD_RESPONSES:
        data = resp.encode("utf-8")
        if form == "initial":
            c.send(b"AUTH PLAIN " + data + b"\r\n")
        else:
            c.cmd("AUTH PLAIN", 334, "")
            c.send(data + b"\r\n")
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


def test_malformed_auth_commands_and_login(mailgate, env):
    srv = auth_server(mailgate, env)
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


def test_star_cancels(mailgate, env):
    srv = auth_server(mailgate, env)
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
    send_message(c)
    c.quit()


# ---------------------------------------------------------------- line lengths

def test_12288_octet_response_is_a_line(mailgate, env):
    srv = auth_server(mailgate, env)
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


# ---------------------------------------------------------------- success and failure

@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
@pytest.mark.parametrize("initial", [True, False], ids=["initial-response", "challenge"])
def test_smtplib_auth_over_starttls(mailgate, env, mech, initial):
    srv = auth_server(mailgate, env, policy={"auth_requires_tls": True})
    mark = srv.log_mark()
    user = "bob"
    with smtplib.SMTP(HOST, srv.port, local_hostname=CLIENT_NAME, timeout=30) as s:
        s.ehlo()
        assert not s.has_extn("auth")
        s.starttls(context=client_ctx())
        s.ehlo()
        assert s.has_extn("auth") and s.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
        s.user, s.password = user, USERS[user]
        obj = s.auth_plain if mech == "PLAIN" else s.auth_login
        code, msg = s.auth(mech, obj, initial_response_ok=initial)
        assert (code, msg) == (235, AUTH_OK.encode())
        assert s.sendmail("sender@test.example", ["rcpt@test.example"],
                          b"Subject: smtplib AUTH\r\n\r\nhello\r\n") == {}
    icid = int(srv.wait_log(r"Info: New SMTP ICID (\d+) ", mark).group(1))
    srv.assert_log(SUCCEEDED % (icid, user, mech), mark)
    assert len(srv.queue_mids()) == 1


def test_smtplib_login_picks_plain(mailgate, env):
    srv = auth_server(mailgate, env)
    with smtplib.SMTP(HOST, srv.port, local_hostname=CLIENT_NAME, timeout=30) as s:
        assert s.login("alice", "secret") == (235, AUTH_OK.encode())


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_swaks_tls_auth(mailgate, env, mech):
    srv = auth_server(mailgate, env, policy={"auth_requires_tls": True})
    mark = srv.log_mark()
    r = subprocess.run(["swaks", "--server", "%s:%d" % (HOST, srv.port), "--tls",
                        "--auth", mech, "--auth-user", "alice", "--auth-password", "secret",
                        "--from", "sender@test.example", "--to", "rcpt@test.example",
                        "--helo", CLIENT_NAME, "--timeout", "30"],
                       capture_output=True, timeout=90)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, out + r.stderr.decode(errors="replace")
    assert "<~  235 " + AUTH_OK in out, out
    assert re.search(r"^ ?<~  250 ok: Message \d+ accepted$", out, re.M), out
    icid = int(srv.wait_log(r"Info: New SMTP ICID (\d+) ", mark).group(1))
    srv.assert_log(r"Info: ICID %d TLS success protocol TLSv1\.[23] cipher \S+$" % icid, mark)
    srv.assert_log(SUCCEEDED % (icid, "alice", mech), mark)
    assert len(srv.queue_mids()) == 1


def test_credentials_invalid(mailgate, env):
    """A wrong password, an unknown user and someone else's authorization identity
    each get the 535 (on three connections at once: the delay runs in parallel);
    the session goes on and the right credentials then succeed."""
    srv = auth_server(mailgate, env)
    cases = [("alice", "PLAIN", plain("alice", "wrong")),
             ("mallory", "PLAIN", plain("mallory", "secret")),
             ("alice", "PLAIN", plain("alice", "secret", authzid="bob"))]
    clients = [greeted(srv) for _ in cases]
    mark = srv.log_mark()
    for c, (_, _, resp) in zip(clients, cases):
        c.line("AUTH PLAIN " + resp)
    for c, (user, mech, _) in zip(clients, cases):
        c.expect(535, AUTH_BAD)
        srv.assert_log(FAILED % (c.icid, user, mech), mark)
    # a failed LOGIN (a second failure for the first client, below the limit of 3)
    c = clients[0]
    c.cmd("AUTH LOGIN", 334, USER_CHALLENGE)
    c.cmd(b64("alice"), 334, PASS_CHALLENGE)
    c.cmd(b64("Secret"), 535, AUTH_BAD)
    srv.assert_log(FAILED % (c.icid, "alice", "LOGIN"), mark)
    assert "succeeded" not in srv.log_since(mark)
    for c in clients:
        auth_plain_ok(c)
        c.quit()


def test_client_gone_during_the_check(mailgate, env):
    """Clients that close while their credentials are being checked (or a failure is
    delayed): the server goes on (ASan watches). Another client's failed AUTH, answered
    after the same delay, comes after those checks were answered."""
    srv = auth_server(mailgate, env)
    for resp in (plain("alice", "wrong"), plain("alice", "secret")):
        gone = greeted(srv)
        gone.line("AUTH PLAIN " + resp)
        gone.close()
    c = greeted(srv)
    c.cmd("AUTH PLAIN " + plain("mallory", "x"), 535, AUTH_BAD)
    srv.assert_serving()


def test_brute_force_421(mailgate, env):
    srv = auth_server(mailgate, env, limits={"auth_failure_limit": 3})
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


# ---------------------------------------------------------------- relaying and TLS

def public_server(mailgate, env):
    return auth_server(mailgate, env, policy={"action": "accept"}, listener_type="public",
                       rat=[{"recipient": "test.example", "action": "accept"},
                            {"recipient": "ALL", "action": "reject"}])


def test_authenticated_client_may_relay(mailgate, env):
    srv = public_server(mailgate, env)
    c = greeted(srv)
    c.mail("sender@test.example")
    mark = srv.log_mark()
    c.rcpt("someone@elsewhere.example", code=550)
    srv.assert_failed_logged(c, mark)
    c.rcpt("local@test.example")
    c.cmd("RSET", 250, "ok")
    auth_plain_ok(c)
    mid = send_message(c, rcpt="someone@elsewhere.example")
    c.quit()
    assert srv.spool_file(mid).rcpts == [(0, "<someone@elsewhere.example>")]


def test_starttls_forgets_authentication(mailgate, env):
    """hostile.md 4: after STARTTLS there is no AUTH any more (nor a greeting)."""
    srv = public_server(mailgate, env)
    c = greeted(srv)
    auth_plain_ok(c)
    starttls(c)
    c.cmd("MAIL FROM:<sender@test.example>", 503, "#5.5.1 HELO or EHLO first")
    r = c.ehlo(CLIENT_NAME)
    assert "AUTH PLAIN LOGIN" in ehlo_keywords(r), r
    c.mail("sender@test.example")
    c.cmd("RCPT TO:<someone@elsewhere.example>", 550, "#5.1.0 Address rejected")
    c.cmd("RSET", 250, "ok")
    auth_plain_ok(c)             # not "503 #5.5.0 Already authenticated"
    mid = send_message(c, rcpt="someone@elsewhere.example")
    c.quit()
    assert mid in srv.queue_mids()


def test_auth_inside_tls_session(mailgate, env):
    srv = auth_server(mailgate, env, policy={"auth_requires_tls": True})
    c = tls_session(srv)
    mark = srv.log_mark()
    c.cmd("AUTH LOGIN " + b64("bob"), 334, PASS_CHALLENGE)
    c.cmd(b64(USERS["bob"]), 235, AUTH_OK)
    srv.assert_log(SUCCEEDED % (c.icid, "bob", "LOGIN"), mark)
    c.cmd("AUTH PLAIN " + plain("bob", USERS["bob"]), 503, "#5.5.0 Already authenticated")
    send_message(c)
    c.quit()
