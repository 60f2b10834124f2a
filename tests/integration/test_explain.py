"""mailgate explain: the spec's examples, current values from the config found the
usual way (-c FILE, ./mailgate.conf, the embedded default), other servers'
replies, and the exit statuses."""

import os
import re
import subprocess

import pytest

from conftest import SAN_ENV, check_cli_sanitizers, mailgate_bin


def explain(*args, cwd=None, env=None):
    b = mailgate_bin()
    if not os.path.exists(b):
        pytest.fail("mailgate binary not found at %s" % b)
    e = dict(os.environ)
    for k, v in SAN_ENV.items():
        e.setdefault(k, v)
    e.pop("NO_COLOR", None)
    e.update(env or {})
    r = subprocess.run([b, "explain"] + list(args), capture_output=True, timeout=60, env=e,
                       cwd=cwd)
    check_cli_sanitizers(r)
    return r


def out(r):
    return r.stdout.decode("ascii", "replace")


def show(r):
    return "exit %s\nstdout:\n%s\nstderr:\n%s" % (r.returncode, out(r),
                                                   r.stderr.decode(errors="replace"))


def entries(r):
    """the explanations printed: blocks separated by a blank line, first line = the reply"""
    return [b.split("\n") for b in out(r).strip("\n").split("\n\n")]


def test_too_many_connections_from_your_host(tmp_path):
    r = explain("421", "Too many connections from your host", cwd=str(tmp_path))
    assert r.returncode == 0, show(r)
    (e,) = entries(r)
    assert e[0] == "421 #4.4.5 Too many connections from your host", show(r)
    text = "\n".join(e)
    assert "max_connections_per_host" in text
    # the embedded default's value, as policy_defaults holds it
    assert re.search(r"policy_defaults\.max_connections_per_host = 10\b", text), text
    assert re.search(r"^  what happened: +\S", text, re.M) and \
        re.search(r"^  what to do: +\S", text, re.M), text


def test_code_and_enhanced_code(tmp_path):
    for q in (["452 #4.5.3"], ["452", "#4.5.3"], ["452 4.5.3"]):
        r = explain(*q, cwd=str(tmp_path))
        assert r.returncode == 0, show(r)
        heads = [e[0] for e in entries(r)]
        assert "452 #4.5.3 Too many recipients" in heads, show(r)
        assert "452 #4.5.3 Too many recipients received this hour" in heads, show(r)
        assert "max_recipients_per_message" in out(r) and "max_recipients_per_hour" in out(r)


def test_enhanced_code_alone(tmp_path):
    r = explain("5.7.1", cwd=str(tmp_path))
    assert r.returncode == 0, show(r)
    heads = [e[0] for e in entries(r)]
    assert any(h.startswith("554 5.7.1") for h in heads), show(r)
    assert any(h.startswith("550 5.7.1") for h in heads), show(r)
    assert "relay" in out(r).lower()
    assert "delivery not authorized" in out(r)


def test_text_alone(tmp_path):
    r = explain("Line too long", cwd=str(tmp_path))
    assert r.returncode == 0, show(r)
    (e,) = entries(r)
    assert e[0] == "500 Line too long", show(r)
    r = explain("line", "TOO", "long", cwd=str(tmp_path))
    assert r.returncode == 0 and entries(r)[0][0] == "500 Line too long", show(r)


def test_code_alone_lists_every_entry(tmp_path):
    r = explain("421", cwd=str(tmp_path))
    assert r.returncode == 0, show(r)
    heads = [e[0] for e in entries(r)]
    for t in ("421 #4.4.5 Too many connections from your host",
              "421 #4.4.5 Too many connections to this host",
              "421 Exceeded bad SMTP command limit, disconnecting",
              "421 Timed out waiting for command, disconnecting"):
        assert t in heads, show(r)
    assert len(heads) >= 10, heads


def test_foreign_replies(tmp_path):
    r = explain("550 5.1.1 <x@example.com>: Recipient address rejected: User unknown",
                cwd=str(tmp_path))
    assert r.returncode == 0, show(r)
    (e,) = entries(r)
    assert e[0].startswith("550 5.1.1"), show(r)
    assert "user unknown" in out(r).lower() and "bad destination mailbox address" in out(r)
    assert "setting:" not in out(r)        # not one of mailgate's own
    r = explain("450", "4.7.1", "Greylisted", cwd=str(tmp_path))
    assert r.returncode == 0 and "greylist" in out(r).lower(), show(r)
    r = explain("554 5.7.1 <x@example.com>: Relay access denied", cwd=str(tmp_path))
    assert r.returncode == 0 and entries(r)[0][0].startswith("554 5.7.1"), show(r)
    assert "relay" in out(r).lower()


def test_rfc_fallback(tmp_path):
    r = explain("550 5.1.9 something new", cwd=str(tmp_path))
    assert r.returncode == 0, show(r)
    assert "addressing" in out(r) and "permanent failure" in out(r), show(r)
    r = explain("354", cwd=str(tmp_path))
    assert r.returncode == 0 and "<CRLF>.<CRLF>" in out(r), show(r)


def test_no_match_is_exit_1(tmp_path):
    r = explain("the", "quick", "brown", "fox", cwd=str(tmp_path))
    assert r.returncode == 1, show(r)
    assert r.stdout == b"" and b"nothing known" in r.stderr, show(r)


def test_usage(tmp_path):
    r = explain(cwd=str(tmp_path))
    assert r.returncode == 2 and b"usage: mailgate explain" in r.stderr, show(r)
    for h in ("--help", "-h"):
        r = explain(h, cwd=str(tmp_path))
        assert r.returncode == 0 and "usage: mailgate explain" in out(r), show(r)
    r = subprocess.run([mailgate_bin(), "help", "explain"], capture_output=True)
    assert r.returncode == 0 and b"mailgate explain" in r.stdout
    r = explain("-c", str(tmp_path / "nope.conf"), "421", cwd=str(tmp_path))
    assert r.returncode == 2, show(r)


def test_values_from_given_config(mailgate):
    srv = mailgate(start=False, limits={"bad_command_limit": 7},
                   policy={"max_recipients_per_message": 3})
    r = explain("-c", str(srv.config_path), "421", "Exceeded bad SMTP command limit",
                cwd="/")
    assert r.returncode == 0, show(r)
    assert "limits.bad_command_limit = 7" in out(r), show(r)
    r = explain("-c", str(srv.config_path), "452", "#4.5.3", "Too many recipients", cwd="/")
    assert r.returncode == 0, show(r)
    # policy_defaults' value, and the policy that sets its own
    assert re.search(r"policy_defaults\.max_recipients_per_message = 50\b", out(r)), show(r)
    assert "policies.RELAYED.max_recipients_per_message = 3" in out(r), show(r)
    # the listener settings by listener name
    r = explain("-c", str(srv.config_path), "421 #4.4.5 Too many connections to this listener",
                cwd="/")
    assert re.search(r"listeners\.default\.max_connections = \d+", out(r)), show(r)


def test_values_from_local_mailgate_conf(mailgate):
    srv = mailgate(start=False, limits={"bad_command_limit": 9})
    assert srv.config_path.name == "mailgate.conf"
    r = explain("Exceeded bad SMTP command limit", cwd=str(srv.dir))
    assert r.returncode == 0 and "limits.bad_command_limit = 9" in out(r), show(r)


def test_config_with_errors_still_explains(tmp_path):
    (tmp_path / "mailgate.conf").write_text("limits = { no_such_limit = 1; };\n")
    r = explain("Line too long", cwd=str(tmp_path))
    assert r.returncode == 0, show(r)
    assert entries(r)[0][0] == "500 Line too long"
    assert b"values are not shown" in r.stderr, show(r)


def test_policy_reply_shows_configured_text(mailgate):
    srv = mailgate(start=False, top={"policy_defaults": {"reject_text": "Go away"}})
    r = explain("-c", str(srv.config_path), "554 mx.test.example Go away", cwd="/")
    assert r.returncode == 0, show(r)
    assert entries(r)[0][0] == "554 mx.test.example Go away", show(r)
    assert "reject_text" in out(r)


def test_no_colour_when_piped_or_no_color(tmp_path):
    r = explain("550", cwd=str(tmp_path))
    assert r.returncode == 0 and b"\x1b" not in r.stdout
    r = explain("550", cwd=str(tmp_path), env={"NO_COLOR": "1"})
    assert r.returncode == 0 and b"\x1b" not in r.stdout
