"""The mailgate command: check, queue list/show, help, exit statuses, and the
embedded default config actually serving."""

import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile

import pytest

from conftest import SAN_ENV, check_cli_sanitizers, mailgate_bin

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


def run(args, cwd=None, timeout=60, input=None):
    b = mailgate_bin()
    if not os.path.exists(b):
        pytest.fail("mailgate binary not found at %s" % b)
    env = dict(os.environ)
    for k, v in SAN_ENV.items():
        env.setdefault(k, v)
    env.pop("NOTIFY_SOCKET", None)
    r = subprocess.run([b] + list(args), capture_output=True, cwd=cwd, timeout=timeout, env=env,
                       input=input)
    check_cli_sanitizers(r)
    return r


def out(r):
    return r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")


def strip_comments(text):
    return "\n".join(l for l in text.splitlines()
                     if not re.match(r"\s*(#|//)", l) and l.strip())


# ------------------------------------------------------------------ check

def test_check_prints_effective_config(mailgate, tmp_path):
    s = mailgate(start=False, limits={"bad_command_limit": 7})
    r = run(["check", "-c", str(s.config_path)])
    assert r.returncode == 0, out(r)
    text = r.stdout.decode()
    assert "mx.test.example" in text
    assert "127.0.0.1:%d" % s.port in text
    assert re.search(r"bad_command_limit\s*=\s*7\s*;", text), text
    # defaults are filled in
    for name in ["max_header_lines", "max_hops", "command_timeout", "min_free_disk",
                 "max_message_size", "bare_crlf"]:
        assert name in text, "%s missing from the effective config:\n%s" % (name, text)
    # what check prints is itself a valid config that prints the same
    again = tmp_path / "effective.conf"
    again.write_text(text)
    r2 = run(["check", "-c", str(again)])
    assert r2.returncode == 0, out(r2)
    assert strip_comments(r2.stdout.decode()) == strip_comments(text)


BAD_CONFIGS = {
    "unknown-top": ('hostname = "mx.test.example";\nspool = "/tmp/x";\nbogus_setting = 1;\n', 3),
    "unknown-nested": ('hostname = "mx.test.example";\nlimits = {\n  max_hops = 5;\n'
                       '  max_hopz = 6;\n};\n', 4),
    "wrong-type": ('hostname = "mx.test.example";\nlimits = {\n  bad_command_limit = "many";\n};\n',
                   3),
    "bad-enum": ('hostname = "mx.test.example";\npolicies = {\n  P = {\n    action = "relay";\n'
                 '    bare_crlf = "maybe";\n  };\n};\n', 5),
    "bad-size": ('hostname = "mx.test.example";\n\npolicy_defaults = {\n'
                 '  max_message_size = "10Q";\n};\n', 4),
    "bad-duration": ('limits = {\n  command_timeout = "5 fortnights";\n};\n', 2),
    "syntax": ('hostname = "mx.test.example";\nlimits = {\n  max_hops = ;\n};\n', 3),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_check_reports_file_and_line(tmp_path, case):
    text, line = BAD_CONFIGS[case]
    p = tmp_path / "bad.conf"
    p.write_text(text)
    r = run(["check", "-c", str(p)])
    assert r.returncode == 1, "exit %d:\n%s" % (r.returncode, out(r))
    assert "%s:%d:" % (p, line) in out(r), out(r)


def test_serve_refuses_config_with_errors(tmp_path):
    p = tmp_path / "bad.conf"
    p.write_text('hostname = "mx.test.example";\nlimits = {\n  no_such_limit = 1;\n};\n')
    env_sock = tempfile.mkdtemp(prefix="mgit-")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(os.path.join(env_sock, "n"))
    try:
        env = dict(os.environ, NOTIFY_SOCKET=os.path.join(env_sock, "n"))
        for k, v in SAN_ENV.items():
            env.setdefault(k, v)
        proc = subprocess.run([mailgate_bin(), "serve", "-c", str(p)], capture_output=True,
                              timeout=30, env=env, cwd=str(tmp_path))
        assert proc.returncode != 0
        assert "%s:3:" % p in out(proc), out(proc)
        ns.setblocking(False)
        try:
            got = ns.recv(4096)
        except BlockingIOError:
            got = b""
        assert b"READY=1" not in got
    finally:
        ns.close()
        shutil.rmtree(env_sock, ignore_errors=True)


def test_check_without_file_prints_embedded_default(tmp_path):
    r = run(["check"], cwd=str(tmp_path))
    assert r.returncode == 0, out(r)
    text = r.stdout.decode()
    assert "127.0.0.1:2525" in text and "mailgate-spool" in text, text
    assert "maildir:" in text
    # the default can be copied into a file and used as a starting point
    (tmp_path / "copy.conf").write_text(text)
    r2 = run(["check", "-c", "copy.conf"], cwd=str(tmp_path))
    assert r2.returncode == 0, out(r2)


def test_check_picks_local_mailgate_conf(tmp_path):
    (tmp_path / "mailgate.conf").write_text(
        'hostname = "cwd.test.example";\n'
        'policies = { RELAYED = { action = "relay"; }; };\n'
        'listeners = ( { name = "cwd"; listen = [ "127.0.0.1:2599" ]; type = "private";\n'
        '  hat = ( { group = "LOCAL"; hosts = [ "127.0.0.0/8" ]; policy = "RELAYED"; } ); } );\n')
    r = run(["check"], cwd=str(tmp_path))
    assert r.returncode == 0, out(r)
    assert "cwd.test.example" in r.stdout.decode()


def test_check_missing_file_is_exit_2(tmp_path):
    r = run(["check", "-c", str(tmp_path / "nope.conf")])
    assert r.returncode == 2, out(r)


# ------------------------------------------------------------------ queue

@pytest.fixture
def queued(mailgate):
    s = mailgate()
    c = s.connect()
    c.ehlo()
    body = b"Subject: cli listing\r\nMessage-ID: <cli@test.example>\r\n\r\nqueued body\r\n"
    mid = c.send_message(sender="cli@test.example", rcpts=["x@one.example", "y@two.example"],
                         body=body)
    mid2 = c.send_message(sender="", rcpts=["z@three.example"])
    c.quit()
    return s, mid, mid2, body


def test_queue_list_text(queued):
    s, mid, mid2, _ = queued
    r = s.cli("queue", "list")
    check_cli_sanitizers(r)
    assert r.returncode == 0, out(r)
    text = r.stdout.decode()
    assert re.search(r"(?<!\d)%d(?!\d)" % mid, text) and re.search(r"(?<!\d)%d(?!\d)" % mid2, text)
    assert "cli@test.example" in text and "x@one.example" in text and "y@two.example" in text


def test_queue_list_json(queued):
    s, mid, mid2, body = queued
    items = s.queue_list_json()
    by = {m["mid"]: m for m in items}
    assert set(by) >= {mid, mid2}, items
    m = by[mid]
    assert set(m) >= {"mid", "arrival", "size", "sender", "recipients"}, m
    assert isinstance(m["mid"], int)
    assert RFC3339.fullmatch(m["arrival"]), m
    assert isinstance(m["size"], int) and m["size"] >= len(body)
    assert m["sender"] == "cli@test.example"
    assert [(x["rid"], x["address"]) for x in m["recipients"]] == [(0, "x@one.example"),
                                                                  (1, "y@two.example")], m
    for x in m["recipients"]:
        # nothing can be delivered (the route is dead): queued, or deferred after a try
        assert x["state"] in ("queued", "deferred"), x
    assert by[mid2]["sender"] == ""
    assert [i["mid"] for i in items] == sorted(i["mid"] for i in items)


def test_queue_show(queued):
    s, mid, _, body = queued
    r = s.cli("queue", "show", str(mid))
    check_cli_sanitizers(r)
    assert r.returncode == 0, out(r)
    text = r.stdout
    assert b"cli@test.example" in text and b"x@one.example" in text
    assert b"Subject: cli listing" in text and b"queued body" in text
    # envelope first, then the message
    assert text.find(b"cli@test.example") < text.find(b"queued body")


def test_queue_show_unknown_mid(queued):
    s = queued[0]
    r = s.cli("queue", "show", "999999")
    check_cli_sanitizers(r)
    assert r.returncode == 1, out(r)


def test_queue_works_without_server(queued):
    s, mid, _, _ = queued
    s.stop()
    assert mid in [m["mid"] for m in s.queue_list_json()]
    r = s.cli("queue", "show", str(mid))
    assert r.returncode == 0, out(r)


# ------------------------------------------------------------------ help and usage

@pytest.mark.parametrize("args", [["help"], ["--help"], ["help", "queue"], ["help", "serve"],
                                  ["check", "--help"], ["queue", "--help"]])
def test_help_exits_0(args, tmp_path):
    r = run(args, cwd=str(tmp_path))
    assert r.returncode == 0, out(r)
    assert "usage" in out(r).lower() or "mailgate" in out(r), out(r)


@pytest.mark.parametrize("args", [["frobnicate"], ["check", "--no-such-option"],
                                  ["queue", "frobnicate"]])
def test_usage_errors_exit_2(args, tmp_path):
    r = run(args, cwd=str(tmp_path))
    assert r.returncode == 2, out(r)


def test_help_lists_subcommands(tmp_path):
    r = run(["help"], cwd=str(tmp_path))
    for sub in ["serve", "check", "queue"]:
        assert sub in out(r), out(r)


# ------------------------------------------------------------------ the embedded default

def port_free(port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def test_embedded_default_serves(tmp_path):
    if not port_free(2525):
        pytest.skip("127.0.0.1:2525 is in use")
    sockdir = tempfile.mkdtemp(prefix="mgit-")
    npath = os.path.join(sockdir, "notify")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(npath)
    env = dict(os.environ, NOTIFY_SOCKET=npath)
    for k, v in SAN_ENV.items():
        env.setdefault(k, v)
    errf = open(tmp_path / "stderr.txt", "wb")
    proc = subprocess.Popen([mailgate_bin(), "serve"], cwd=str(tmp_path), env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errf)
    try:
        ns.settimeout(20)
        got = b""
        while b"READY=1" not in got:
            got += ns.recv(4096)
        s = smtplib.SMTP("127.0.0.1", 2525, local_hostname="dev.example", timeout=30)
        s.ehlo()
        s.mail("dev@localhost")
        s.rcpt("me@localhost")
        code, resp = s.data(b"Subject: dev\r\n\r\nhello\r\n")
        s.quit()
        assert code == 250 and re.fullmatch(rb"ok: Message \d+ accepted", resp), resp
        assert (tmp_path / "mailgate-spool").is_dir()
    finally:
        ns.close()
        shutil.rmtree(sockdir, ignore_errors=True)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        errf.close()
    err = (tmp_path / "stderr.txt").read_text(errors="replace")
    for mark in ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer"):
        assert mark not in err, err[-5000:]
    assert proc.returncode == 0, err[-3000:]
