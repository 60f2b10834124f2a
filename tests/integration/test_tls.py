"""STARTTLS (issue 4): replies.md's TLS replies under their conditions, logs.md's TLS
lines, the TLS session limit, certificate reloads, implicit TLS, with real clients: the
raw client, smtplib, `openssl s_client`, and `mailgate probe --starttls` (issue 7).
hostile.md 4 (STARTTLS injection) is test_hostile_04_starttls_injection.py.

Only 127.0.0.1; no sleeps; no timing assertions."""

import os
import re
import smtplib
import ssl
import subprocess

import pytest

from conftest import HOST, HOSTNAME, SAN_ENV, check_cli_sanitizers, mailgate_bin
from tlsauth import (CLIENT_NAME, TLSClient, cert_fields, client_ctx, ehlo_keywords, make_cert,
                     make_certs, starttls, tls_session, tls_wrap)

TLS_SUCCESS = r"Info: ICID %d TLS success protocol %s cipher \S+$"
TLS_FAILED = r"Info: ICID %d TLS failed: \S.*$"

BODY = b"Subject: over TLS\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory)


def tls_server(mailgate, cert, policy=None, limits=None, listener=None, top=None, **kw):
    pol = {"tls": "preferred"}
    pol.update(policy or {})
    t = {"tls": cert.conf}
    t.update(top or {})
    return mailgate(policy=pol, limits=limits, listener=listener, top=t, **kw)


# ---------------------------------------------------------------- EHLO and the session

def test_ehlo_offers_starttls_only_before_tls(mailgate, certs):
    srv = tls_server(mailgate, certs["rsa"])
    c = srv.connect()
    r = c.ehlo(CLIENT_NAME)
    assert "STARTTLS" in ehlo_keywords(r), r
    assert "starttls" in c.cmd("HELP", 214).text.split()
    mark = srv.log_mark()
    starttls(c)
    r = c.ehlo(CLIENT_NAME)
    # written when the server's side of the handshake ends: before the EHLO's reply
    srv.assert_log(TLS_SUCCESS % (c.icid, r"TLSv1\.3"), mark)
    assert r.lines[0] == HOSTNAME, r
    assert "STARTTLS" not in ehlo_keywords(r), r
    assert {"8BITMIME", "PIPELINING"} <= set(ehlo_keywords(r)), r
    mid = c.send_message(body=BODY)
    c.quit()
    assert srv.spool_file(mid).body == b"Subject: over TLS\r\n\r\nhello\r\n"


def test_tls_off_starttls_is_no_command(mailgate, certs):
    """A certificate is configured, but the policy says tls = "off"."""
    srv = tls_server(mailgate, certs["rsa"], policy={"tls": "off"})
    c = srv.connect()
    r = c.ehlo(CLIENT_NAME)
    assert "STARTTLS" not in ehlo_keywords(r), r
    assert "starttls" not in c.cmd("HELP", 214).text.split()
    mark = srv.log_mark()
    c.cmd("STARTTLS", 500, "#5.5.1 command not recognized")
    srv.assert_failed_logged(c, mark)
    # still plain text, still serving
    c.cmd("NOOP", 250, "ok")
    c.send_message(body=BODY)
    c.quit()


def test_tls_required_refuses_mail_rcpt_data_auth(mailgate, certs, tmp_path):
    srv = tls_server(mailgate, certs["rsa"],
                     policy={"tls": "required", "auth": "preferred", "auth_requires_tls": False},
                     top={"auth": {"users": str(tmp_path / "users")}})
    c = srv.connect()
    r = c.ehlo(CLIENT_NAME)
    assert "STARTTLS" in ehlo_keywords(r), r
    mark = srv.log_mark()
    for line in ("MAIL FROM:<sender@test.example>", "RCPT TO:<rcpt@test.example>", "DATA",
                 "AUTH PLAIN AGFsaWNlAHNlY3JldA=="):
        c.cmd(line, 530, "#5.7.0 Must issue a STARTTLS command first")
    srv.assert_failed_logged(c, mark, count=4)
    # what is not mail goes on in the clear
    c.cmd("NOOP", 250, "ok")
    c.cmd("RSET", 250, "ok")
    starttls(c)
    c.ehlo(CLIENT_NAME)
    mid = c.send_message(body=BODY)
    c.quit()
    assert mid in srv.queue_mids()


def test_tls_required_senders(mailgate, certs):
    srv = tls_server(mailgate, certs["rsa"],
                     policy={"tls_required_senders": ["vip@test.example", "secure.test"]})
    c = srv.connect()
    c.ehlo(CLIENT_NAME)
    mark = srv.log_mark()
    for sender in ("vip@test.example", "anyone@secure.test", "someone@SECURE.test"):
        c.cmd("MAIL FROM:<%s>" % sender, 530,
              "#5.7.0 This sender must issue a STARTTLS command first")
    srv.assert_failed_logged(c, mark, count=3)
    # other senders, even of the same domain, go on in the clear
    c.mail("other@test.example")
    c.cmd("RSET", 250, "ok")
    starttls(c)
    c.ehlo(CLIENT_NAME)
    for sender in ("vip@test.example", "anyone@secure.test"):
        c.mail(sender)
        c.rcpt("rcpt@test.example")
        assert c.data(b"Subject: tls sender\r\n\r\nx\r\n.\r\n").code == 250
    c.quit()


# ---------------------------------------------------------------- the limit on TLS sessions

def test_max_tls_sessions(mailgate, certs):
    srv = tls_server(mailgate, certs["rsa"], limits={"max_tls_sessions": 1})
    a = tls_session(srv)
    b = srv.connect()
    b.ehlo(CLIENT_NAME)
    mark = srv.log_mark()
    b.cmd("STARTTLS", 421, "#4.4.5 Too many TLS sessions at this time")
    b.expect_closed()
    srv.assert_failed_logged(b, mark)
    # a plain client is still served, and so is the TLS one
    srv.assert_serving()
    a.send_message(body=BODY)
    a.quit()
    # the slot is free again once the TLS session is gone
    srv.wait_closed_logged(a)
    d = tls_session(srv)
    d.send_message(body=BODY)
    d.quit()


# ---------------------------------------------------------------- handshakes

@pytest.mark.parametrize("version,name", [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
                                          (ssl.TLSVersion.TLSv1_3, "TLSv1.3")])
def test_tls_versions_accepted(mailgate, certs, version, name):
    srv = tls_server(mailgate, certs["rsa"])
    c = srv.connect()
    c.ehlo(CLIENT_NAME)
    mark = srv.log_mark()
    starttls(c, client_ctx(minimum=version, maximum=version))
    assert c.sock.version() == name
    c.ehlo(CLIENT_NAME)
    srv.assert_log(TLS_SUCCESS % (c.icid, re.escape(name)), mark)
    c.send_message(body=BODY)
    c.quit()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1],
                         ids=["TLSv1.0", "TLSv1.1"])
def test_old_tls_versions_refused(mailgate, certs, version):
    srv = tls_server(mailgate, certs["rsa"])
    c = srv.connect()
    c.ehlo(CLIENT_NAME)
    c.cmd("STARTTLS", 220, "Go ahead with TLS")
    mark = srv.log_mark()
    with pytest.raises(ssl.SSLError) as e:
        tls_wrap(c, client_ctx(minimum=version, maximum=version, legacy=True))
    # the ClientHello went out and the server answered it with an alert (protocol_version),
    # not a local refusal of this client's own library
    assert "ALERT" in (e.value.reason or ""), e.value
    srv.wait_log(TLS_FAILED % c.icid, mark)
    assert "TLS success" not in srv.log_since(mark)
    srv.assert_serving()


def test_ec_certificate(mailgate, certs):
    srv = tls_server(mailgate, certs["ec"])
    c = tls_session(srv)
    assert c.peer_der() == certs["ec"].der
    c.send_message(body=BODY)
    c.quit()


def test_listener_certificate_overrides_the_global_one(mailgate, certs):
    srv = tls_server(mailgate, certs["rsa"], listener={"tls": certs["other"].conf})
    c = tls_session(srv)
    assert c.peer_der() == certs["other"].der
    assert cert_fields(c.peer_der())["subject"] == "CN = other.test.example"
    c.quit()


def test_implicit_tls_listener(mailgate, certs):
    """tls_wrapper = true: the handshake first, then the 220 banner inside TLS."""
    srv = tls_server(mailgate, certs["rsa"], listener={"tls_wrapper": True})
    mark = srv.log_mark()
    c = srv.raw_connect()
    tls_wrap(c)
    c.banner()
    icid = int(srv.wait_log(r"Info: New SMTP ICID (\d+) ", mark).group(1))
    r = c.ehlo(CLIENT_NAME)
    assert "STARTTLS" not in ehlo_keywords(r), r
    srv.assert_log(TLS_SUCCESS % (icid, r"TLSv1\.3"), mark)
    c.cmd("STARTTLS", 503, "#5.5.1 TLS already active")
    mid = c.send_message(body=BODY)
    c.quit()
    assert mid in srv.queue_mids()
    # and with smtplib's SMTP_SSL
    with smtplib.SMTP_SSL(HOST, srv.port, local_hostname=CLIENT_NAME, timeout=30,
                          context=client_ctx()) as s:
        assert s.sock.version() == "TLSv1.3"
        assert s.sendmail("sender@test.example", ["rcpt@test.example"],
                          b"Subject: smtps\r\n\r\nhello\r\n") == {}
    assert len(srv.queue_mids()) == 2


def test_implicit_tls_session_limit(mailgate, certs):
    """max_tls_sessions counts implicit TLS too: past it, a new connection is closed
    before any handshake; once a session ends, its slot is free."""
    srv = tls_server(mailgate, certs["rsa"], listener={"tls_wrapper": True},
                     limits={"max_tls_sessions": 1})
    a = tls_wrap(srv.raw_connect())
    a.banner()
    a.ehlo(CLIENT_NAME)
    b = srv.raw_connect()
    with pytest.raises((ssl.SSLError, ConnectionError)):
        tls_wrap(b)
    a.send_message(body=BODY)
    mark = srv.log_mark()
    a.quit()
    srv.wait_log(r"Info: ICID \d+ close$", mark)
    c = tls_wrap(srv.raw_connect())
    c.banner()
    c.ehlo(CLIENT_NAME)
    c.send_message(body=BODY)
    c.quit()


# ---------------------------------------------------------------- certificates and reload

def test_reload_with_a_broken_certificate_keeps_the_old_one(mailgate, certs, tmp_path):
    live = make_cert(tmp_path / "live", "cert")
    srv = tls_server(mailgate, live)
    c = tls_session(srv)
    assert c.peer_der() == live.der
    # the file is replaced by junk: the reload says so and keeps the loaded certificate
    with open(live.certificate, "w") as f:
        f.write("this is not a certificate\n")
    mark = srv.log_mark()
    r = srv.cli("reload")
    check_cli_sanitizers(r)
    assert r.returncode == 0, r
    srv.assert_log(r"Warning: TLS: cannot load certificate %s: .*; keeping the one loaded "
                   r"before$" % re.escape(live.certificate), mark)
    d = tls_session(srv)
    assert d.peer_der() == live.der
    d.send_message(body=BODY)
    d.quit()
    # the session open across the reload goes on
    c.send_message(body=BODY)
    c.quit()


def test_starttls_454_when_the_certificate_never_loaded(mailgate, certs, tmp_path):
    """A listener's own certificate that does not load at start: the server starts,
    offers STARTTLS (TLS is configured) and answers it 454; once the file is good
    and the server reloads, STARTTLS works."""
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    srv = tls_server(mailgate, certs["rsa"],
                     listener={"tls": {"certificate": str(junk), "key": str(junk)}})
    srv.assert_log(r"Warning: TLS: cannot load certificate %s: " % re.escape(str(junk)))
    c = srv.connect()
    r = c.ehlo(CLIENT_NAME)
    assert "STARTTLS" in ehlo_keywords(r), r
    mark = srv.log_mark()
    c.cmd("STARTTLS", 454, "TLS not available due to a temporary reason")
    srv.assert_failed_logged(c, mark)
    # the session goes on in the clear
    c.cmd("NOOP", 250, "ok")
    c.send_message(body=BODY)
    c.quit()
    # a good certificate under that name, a reload: STARTTLS works
    junk.write_bytes(open(certs["other"].certificate, "rb").read() +
                     open(certs["other"].key, "rb").read())
    r = srv.cli("reload")
    check_cli_sanitizers(r)
    assert r.returncode == 0, r
    d = tls_session(srv)
    assert d.peer_der() == certs["other"].der
    d.quit()


def test_reload_swaps_the_certificate_while_a_session_is_open(mailgate, tmp_path):
    live = make_cert(tmp_path / "live", "cert")
    new = make_cert(tmp_path / "new", "cert", cn="mx2.test.example", kind="ec")
    srv = tls_server(mailgate, live)
    old_session = tls_session(srv)
    before = cert_fields(old_session.peer_der())
    assert old_session.peer_der() == live.der
    assert before["subject"] == "CN = mx.test.example", before
    # the same file names, new contents
    with open(live.certificate, "wb") as f:
        f.write(open(new.certificate, "rb").read())
    with open(live.key, "wb") as f:
        f.write(open(new.key, "rb").read())
    mark = srv.log_mark()
    r = srv.cli("reload")
    check_cli_sanitizers(r)
    assert r.returncode == 0, r
    srv.assert_log(r"Info: TLS: loaded certificate %s: " % re.escape(live.certificate), mark)
    # new sessions get the new certificate
    c = tls_session(srv)
    after = cert_fields(c.peer_der())
    assert c.peer_der() == new.der
    assert after["subject"] == "CN = mx2.test.example", after
    assert after["serial"] != before["serial"]
    c.send_message(body=BODY)
    c.quit()
    # the session opened before the reload survives, with its certificate, and sends
    assert old_session.peer_der() == live.der
    mid = old_session.send_message(body=BODY)
    old_session.quit()
    assert mid in srv.queue_mids()


# ---------------------------------------------------------------- real clients

def test_openssl_s_client_starttls(mailgate, certs):
    srv = tls_server(mailgate, certs["rsa"])
    mark = srv.log_mark()
    r = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect",
                        "%s:%d" % (HOST, srv.port), "-name", CLIENT_NAME, "-crlf", "-quiet"],
                       input=b"EHLO after.test.example\nNOOP\nQUIT\n", capture_output=True,
                       timeout=60)
    out = r.stdout.decode(errors="replace")
    err = r.stderr.decode(errors="replace")
    # s_client exits 1 on a TCP close without TLS close_notify after the 221: that is
    # test_quit_inside_tls_sends_close_notify's business, not this test's
    assert r.returncode == 0 or "unexpected eof while reading" in err, (r.returncode, out, err)
    lines = out.splitlines()
    # only what was said inside TLS: the second EHLO, without STARTTLS
    assert lines[0] == "250-%s" % HOSTNAME, out
    assert "250-PIPELINING" in lines or "250 PIPELINING" in lines, out
    assert not any("STARTTLS" in l for l in lines), out
    assert lines[-2:] == ["250 ok", "221 %s" % HOSTNAME], out
    icid = int(srv.wait_log(r"Info: New SMTP ICID (\d+) ", mark).group(1))
    srv.assert_log(TLS_SUCCESS % (icid, r"TLSv1\.3"), mark)


def test_quit_inside_tls_sends_close_notify(mailgate, certs):
    """After QUIT's 221 the server ends TLS properly: a close_notify, then the TCP
    close; a client that does not tolerate a truncated TLS stream sees a clean end."""
    srv = tls_server(mailgate, certs["rsa"])
    c = srv.connect()
    c.ehlo(CLIENT_NAME)
    c.cmd("STARTTLS", 220, "Go ahead with TLS")
    ctx = client_ctx()
    ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
    c.sock = ctx.wrap_socket(c.sock, server_hostname=HOSTNAME, suppress_ragged_eofs=False)
    c.__class__ = TLSClient
    c.ehlo(CLIENT_NAME)
    c.cmd("QUIT", 221, HOSTNAME)
    assert c.buf == b""
    try:
        end = c.sock.recv(100)
    except ssl.SSLError as e:
        raise AssertionError("the TLS stream ended without close_notify: %s" % e) from None
    assert end == b""


def test_smtplib_starttls(mailgate, certs):
    srv = tls_server(mailgate, certs["rsa"])
    with smtplib.SMTP(HOST, srv.port, local_hostname=CLIENT_NAME, timeout=30) as s:
        s.ehlo()
        assert s.has_extn("starttls")
        code, msg = s.starttls(context=client_ctx())
        assert (code, msg) == (220, b"Go ahead with TLS")
        assert s.sock.version() == "TLSv1.3"
        s.ehlo()
        assert not s.has_extn("starttls")
        assert s.sendmail("sender@test.example", ["rcpt@test.example"],
                          b"Subject: smtplib over TLS\r\n\r\nhello\r\n") == {}
    (mid,) = srv.queue_mids()
    assert srv.spool_file(mid).body == b"Subject: smtplib over TLS\r\n\r\nhello\r\n"


# ---------------------------------------------------------------- issue 7: probe --starttls

def run_probe(*args):
    env = dict(os.environ)
    for k, v in SAN_ENV.items():
        env.setdefault(k, v)
    env.pop("NO_COLOR", None)
    env.pop("MAILGATE_PASSWORD", None)
    r = subprocess.run([mailgate_bin(), "probe", "--timeout", "20", *args], capture_output=True,
                       timeout=90, env=env)
    check_cli_sanitizers(r)
    return r, r.stdout.decode("ascii", "replace")


def test_probe_starttls_against_tls_required(mailgate, certs):
    srv = tls_server(mailgate, certs["rsa"], policy={"tls": "required"})
    target = "%s:%d" % (HOST, srv.port)
    r, out = run_probe("--to", "x@example.com", target)
    assert r.returncode == 1, out
    verdict = out.rstrip("\n").split("\n")[-1]
    assert verdict == "refused at MAIL: 530 #5.7.0 Must issue a STARTTLS command first", out
    i = out.index("S: 530 #5.7.0 Must issue a STARTTLS command first")
    assert re.search(r"^   -> \S", out[i:], re.M) and "policies.*.tls" in out[i:], out
    assert "C: RCPT" not in out and srv.queue_mids() == []

    r, out = run_probe("--starttls", "--to", "x@example.com", target)
    assert r.returncode == 0, out
    verdict = out.rstrip("\n").split("\n")[-1]
    m = re.match(r"^accepted: message queued as MID (\d+)$", verdict)
    assert m, out
    assert int(m.group(1)) in srv.queue_mids()
    assert "C: STARTTLS" in out and "S: 220 Go ahead with TLS" in out, out
    assert re.search(r"^   TLS: TLSv1\.3, cipher \S+", out, re.M), out
    assert re.search(r"^   TLS: subject +.*CN ?= ?mx\.test\.example", out, re.M), out
    # EHLO again inside TLS, without STARTTLS in it
    after = out[out.index("TLS: subject"):]
    assert "C: EHLO" in after and "STARTTLS" not in after, out
    assert srv.spool_file(int(m.group(1))).rcpts == [(0, "<x@example.com>")]
