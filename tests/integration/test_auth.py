"""SMTP AUTH (issue 4): replies.md's AUTH replies under their conditions, logs.md's
'SMTP Auth' lines, relaying for an authenticated client; with the raw client, smtplib
and swaks. hostile.md 10 (malformed AUTH, brute force) is test_hostile_10_auth.py.

Each failed AUTH is answered after a fixed delay (1 s): the tests keep failures few
and never measure time. Only 127.0.0.1; no sleeps."""

import re
import smtplib
import subprocess

import pytest

from conftest import HOST
from tlsauth import (AUTH_BAD, AUTH_OK, CLIENT_NAME, FAILED, PASS_CHALLENGE, SUCCEEDED,
                     USER_CHALLENGE, USERS, auth_plain_ok, auth_settings, b64, client_ctx,
                     ehlo_keywords, greeted, make_cert, make_users, plain, starttls, tls_session)

BODY = b"Subject: after AUTH\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("auth")
    return {"cert": make_cert(d, "cert"), "users": make_users(d / "users", USERS)}


def auth_server(mailgate, env, policy=None, limits=None, **kw):
    return mailgate(**auth_settings(env, policy, limits), **kw)


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
    c.send_message(body=BODY)
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
    c.send_message(body=BODY)
    c.quit()


def test_auth_required(mailgate, env):
    srv = auth_server(mailgate, env, policy={"auth": "required"})
    c = greeted(srv)
    mark = srv.log_mark()
    c.cmd("MAIL FROM:<sender@test.example>", 530, "Authentication required")
    srv.assert_failed_logged(c, mark)
    c.cmd("MAIL FROM:<sender@test.example> AUTH=<>", 530, "Authentication required")
    auth_plain_ok(c)
    mid = c.send_message(body=BODY)
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
    mid = c.send_message(rcpts=("someone@elsewhere.example",),
                         body=BODY)
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
    mid = c.send_message(rcpts=("someone@elsewhere.example",),
                         body=BODY)
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
    c.send_message(body=BODY)
    c.quit()
