"""Helpers for the STARTTLS and SMTP AUTH tests (test_tls.py, test_auth.py):
certificates made with `openssl req`, users files made with `mailgate passwd`,
client TLS contexts, and a raw Client upgraded to TLS in place.

Nothing here waits by sleeping: every read is a blocking read with a deadline.
"""

import base64
import os
import select
import ssl
import subprocess
import time
import warnings
from pathlib import Path

from conftest import HOSTNAME, SAN_ENV, check_cli_sanitizers, mailgate_bin
from smtpclient import Client

CLIENT_NAME = "client.test.example"


# ---------------------------------------------------------------- certificates

class Cert:
    """A self-signed certificate and its key, as files, with what a test compares."""

    def __init__(self, certificate, key, cn):
        self.certificate = str(certificate)
        self.key = str(key)
        self.cn = cn
        self.der = ssl.PEM_cert_to_DER_cert(Path(certificate).read_text())

    @property
    def conf(self):
        """The libconfig group: tls = { certificate = ...; key = ...; }"""
        return {"certificate": self.certificate, "key": self.key}


def make_cert(directory, name, cn=HOSTNAME, kind="rsa"):
    """openssl req -x509 -newkey rsa:2048 (or an EC P-256 key) -nodes -days 2."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    cert, key = d / (name + ".pem"), d / (name + ".key")
    if kind == "rsa":
        newkey = ["-newkey", "rsa:2048"]
    else:
        newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    r = subprocess.run(["openssl", "req", "-x509", *newkey, "-nodes", "-subj", "/CN=" + cn,
                        "-days", "2", "-keyout", str(key), "-out", str(cert)],
                       capture_output=True)
    assert r.returncode == 0, "openssl req failed: %s" % r.stderr.decode(errors="replace")
    return Cert(cert, key, cn)


def cert_fields(der):
    """subject and serial of a DER certificate, as `openssl x509` prints them."""
    r = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject", "-serial"],
                       input=der, capture_output=True)
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.decode().splitlines():
        k, _, v = line.partition("=")
        out[k.strip()] = v.strip()
    return out


# ---------------------------------------------------------------- users

def mailgate_passwd(user, password):
    """One users-file line from `mailgate passwd USER` (the password on stdin)."""
    env = dict(os.environ)
    for k, v in SAN_ENV.items():
        env.setdefault(k, v)
    if isinstance(password, str):
        password = password.encode()
    r = subprocess.run([mailgate_bin(), "passwd", user], input=password + b"\n",
                       capture_output=True, env=env, timeout=60)
    check_cli_sanitizers(r)
    assert r.returncode == 0, "mailgate passwd exited %s: %s" % (r.returncode, r.stderr)
    line = r.stdout.decode().strip()
    assert line.startswith(user + ":$"), line
    return line


def make_users(path, users):
    """A users file: one `mailgate passwd` line per (user, password)."""
    Path(path).write_text("".join(mailgate_passwd(u, p) + "\n" for u, p in users.items()))
    return str(path)


def make_certs(tmp_path_factory):
    """The certificates and users file the TLS tests share (one set per module)."""
    d = tmp_path_factory.mktemp("certs")
    return {"rsa": make_cert(d, "rsa"), "ec": make_cert(d, "ec", kind="ec"),
            "other": make_cert(d, "other", cn="other.test.example"),
            "users": make_users(d / "users", {"alice": "secret"})}


# ---------------------------------------------------------------- SASL

def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def plain(user, password, authzid=""):
    """The PLAIN message (RFC 4616), base64: authzid NUL authcid NUL passwd."""
    return b64(authzid.encode() + b"\0" + user.encode() + b"\0" + password.encode())


# ---------------------------------------------------------------- TLS clients

def client_ctx(minimum=None, maximum=None, legacy=False):
    """A client context that verifies nothing (the certificates are self-signed);
    legacy=True lets this client offer protocols its defaults forbid (TLS 1.1)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if legacy:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    with warnings.catch_warnings():         # TLSVersion.TLSv1 and TLSv1_1 are deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        if minimum is not None:
            ctx.minimum_version = minimum
        if maximum is not None:
            ctx.maximum_version = maximum
    return ctx


class TLSClient(Client):
    """A Client whose socket may be an SSLSocket. Decrypted bytes can wait inside
    the SSL object where select() does not see them: look there first."""

    def _fill(self, deadline):
        s = self.sock
        if not isinstance(s, ssl.SSLSocket):
            return super()._fill(deadline)
        if not s.pending():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            r, _, _ = select.select([s], [], [], remaining)
            if not r:
                raise TimeoutError
        s.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            data = s.recv(65536)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError):
            data = b""
        except (TimeoutError, ssl.SSLWantReadError):
            raise TimeoutError from None
        finally:
            s.settimeout(self.timeout)
        if not data:
            self.closed_by_peer = True
            return False
        self.buf += data
        return True

    def expect_silence(self, timeout):       # pragma: no cover - not used under TLS
        raise NotImplementedError("no silence checks inside TLS")

    def peer_der(self):
        return self.sock.getpeercert(binary_form=True)


def tls_wrap(c, ctx=None):
    """Handshake on the client's socket (the server must be waiting for a ClientHello);
    the Client becomes a TLSClient."""
    assert c.buf == b"", "bytes received in the clear before the handshake: %r" % c.buf
    c.sock = (ctx or client_ctx()).wrap_socket(c.sock, server_hostname=HOSTNAME)
    c.__class__ = TLSClient
    return c


def starttls(c, ctx=None):
    """STARTTLS: the 220, nothing after it in the clear, then the handshake."""
    c.cmd("STARTTLS", 220, "Go ahead with TLS")
    return tls_wrap(c, ctx)


def tls_session(srv, ctx=None, ehlo=True):
    """Connect, EHLO, STARTTLS, handshake, and (ehlo=True) EHLO again inside TLS."""
    c = srv.connect()
    c.ehlo(CLIENT_NAME)
    starttls(c, ctx)
    if ehlo:
        c.ehlo(CLIENT_NAME)
    return c


def ehlo_keywords(reply):
    """The extension lines of an EHLO reply (the greeting line dropped)."""
    return reply.lines[1:]


# ---------------------------------------------------------------- AUTH

USERS = {"alice": "secret", "bob": "correct horse: battery staple"}
AUTH_OK = "#2.7.0 Authentication succeeded"
AUTH_BAD = "#5.7.8 Authentication credentials invalid"
AUTH_ARGS = "#5.5.4 Invalid arguments to AUTH command"
SUCCEEDED = r"Info: SMTP Auth: \(ICID %d\) succeeded for user: %s using AUTH mechanism: %s$"
FAILED = r"Info: SMTP Auth: \(ICID %d\) failed for user: %s using AUTH mechanism: %s$"
USER_CHALLENGE = "VXNlcm5hbWU6"          # base64 "Username:"
PASS_CHALLENGE = "UGFzc3dvcmQ6"          # base64 "Password:"


def auth_settings(env, policy=None, limits=None):
    """mailgate(...) settings with tls preferred and auth preferred; by default AUTH
    is allowed in the clear, so the plain raw client can talk to it. env holds
    "cert" and "users" (make_cert, make_users with USERS)."""
    pol = {"tls": "preferred", "auth": "preferred", "auth_requires_tls": False}
    pol.update(policy or {})
    lim = {"bad_command_limit": 100, "auth_failure_limit": 3}
    lim.update(limits or {})
    return {"policy": pol, "limits": lim,
            "top": {"tls": env["cert"].conf, "auth": {"users": env["users"]}}}


def greeted(srv):
    c = srv.connect()
    c.ehlo(CLIENT_NAME)
    return c


def auth_plain_ok(c, user="alice"):
    c.cmd("AUTH PLAIN " + plain(user, USERS[user]), 235, AUTH_OK)
