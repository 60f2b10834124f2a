"""The control socket and the subcommands that use it: `mailgate status`,
`reload` and `listener`, against a real server, and without one (exit 2, said
plainly). The socket is 0600, a second server on the same socket is refused,
and a stale socket left by a crash is replaced at start."""

import json
import os
import re
import socket
import stat
import subprocess
import time

from conftest import SAN_ENV, check_cli_sanitizers, poll_until


def out(r):
    return r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")


def cli(s, *args):
    r = s.cli(*args)
    check_cli_sanitizers(r)
    return r


def status_json(s):
    r = cli(s, "status", "--json")
    assert r.returncode == 0, out(r)
    lines = r.stdout.decode().splitlines()
    assert len(lines) == 1, r.stdout
    return json.loads(lines[0])


def control_path(s):
    return s.settings["control"]


def no_server_message(s):
    return "mailgate: no mailgate server is running (control socket %s: %s)\n" % (
        control_path(s), os.strerror(2))


# ------------------------------------------------------------------ status

def test_status_text(mailgate):
    s = mailgate()
    r = cli(s, "status")
    assert r.returncode == 0, out(r)
    assert r.stderr == b""
    text = r.stdout.decode()
    assert re.search(r"^pid:\s+%d$" % s.proc.pid, text, re.M), text
    assert re.search(r"^uptime:\s+\d+$", text, re.M), text
    assert re.search(r"^sessions:\s+0$", text, re.M), text
    assert re.search(r"^queue:\n  messages:\s+0\n  bytes:\s+0$", text, re.M), text
    # listeners by name, their counters indented under them
    assert re.search(r"^listeners:\n  default:\n    sessions:\s+0\n    suspended:\s+false$",
                     text, re.M), text
    # the values of one object line up
    top = [l for l in text.splitlines() if re.match(r"^\w+:\s+\S", l)]
    assert len(top) >= 4, text
    cols = {len(re.match(r"^\w+:\s+", l).group(0)) for l in top}
    assert len(cols) == 1, "values not aligned:\n" + text


def test_status_json(mailgate):
    s = mailgate()
    d = status_json(s)
    assert d["pid"] == s.proc.pid
    assert isinstance(d["uptime"], int) and d["uptime"] >= 0
    assert d["sessions"] == 0
    assert d["queue"] == {"messages": 0, "bytes": 0}
    assert d["listeners"] == [{"name": "default", "sessions": 0, "suspended": False}]
    assert list(d)[:5] == ["pid", "uptime", "sessions", "connections_total", "queue"]


def test_status_counts_sessions_and_queue(mailgate):
    s = mailgate()
    c = s.connect()
    c.ehlo()
    d = status_json(s)
    assert d["sessions"] == 1, d
    assert d["listeners"][0]["sessions"] == 1, d
    assert d["connections_total"] >= 1, d
    mid = c.send_message()
    c.quit()
    assert (s.queue_dir / str(mid)).exists()
    d = poll_until(lambda: (lambda x: x if x["sessions"] == 0 else None)(status_json(s)), 10,
                   what="the session to end")
    assert d["queue"]["messages"] == 1, d
    assert d["queue"]["bytes"] > 0, d
    r = cli(s, "status")
    assert r.returncode == 0, out(r)
    assert re.search(r"^  messages:\s+1$", r.stdout.decode(), re.M), out(r)


def test_status_detail_accepted(mailgate):
    s = mailgate()
    r = cli(s, "status", "detail")
    assert r.returncode == 0, out(r)
    assert "sessions:" in r.stdout.decode()


def test_status_usage(mailgate):
    s = mailgate(start=False)
    r = cli(s, "status", "bogus")
    assert r.returncode == 2, out(r)
    assert r.stderr.decode().startswith("usage: ")
    r = cli(s, "status", "--help")
    assert r.returncode == 0, out(r)
    assert "mailgate status" in r.stdout.decode()


# ------------------------------------------------------------------ reload

def test_reload(mailgate):
    s = mailgate()
    mark = s.log_mark()
    r = cli(s, "reload")
    assert r.returncode == 0, out(r)
    assert "reloaded" in r.stdout.decode()
    s.assert_log(r"Info: reloaded the configuration from %s$" % re.escape(str(s.config_path)),
                 mark)
    s.assert_serving()


def test_reload_refused(mailgate):
    """The server says no (a listener removed needs a restart): exit 1, its reason shown."""
    s = mailgate()
    s.settings["listeners"][0]["name"] = "renamed"
    s.write_config()
    mark = s.log_mark()
    r = cli(s, "reload")
    assert r.returncode == 1, out(r)
    assert r.stderr.decode() == ("mailgate: reload refused: listener default is gone from the "
                                 "config (restart to remove it)\n"), out(r)
    s.assert_log(r"Warning: reload refused", mark)
    s.assert_serving()


def test_reload_bad_config_refused(mailgate, tmp_path):
    """A config the server cannot load: exit 1 with the file:line reason. The command
    itself reads another (valid) file that names the same control socket."""
    s = mailgate()
    good = tmp_path / "cli.conf"
    good.write_text(s.config_text)
    s.config_path.write_text(s.config_text + "bogus_setting = 1;\n")
    env = dict(os.environ)
    for k, v in SAN_ENV.items():
        env.setdefault(k, v)
    r = subprocess.run([s.bin, "reload", "-c", str(good)], capture_output=True, timeout=60,
                       env=env, cwd=str(s.dir))
    check_cli_sanitizers(r)
    assert r.returncode == 1, out(r)
    err = r.stderr.decode()
    assert err.startswith("mailgate: reload failed, keeping the running config: %s:"
                          % s.config_path), err
    assert len(err.splitlines()) == 1, err
    s.config_path.write_text(s.config_text)
    s.assert_serving()


# ------------------------------------------------------------------ listener

def test_listener_server_answer(mailgate):
    """Whatever the server answers (no such command yet, or no such listener), a
    refusal is exit 1 with the server's reason."""
    s = mailgate()
    for args in (["suspend", "nosuchlistener"], ["suspend", "nosuchlistener", "5"],
                 ["resume", "nosuchlistener"]):
        r = cli(s, "listener", *args)
        assert r.returncode == 1, out(r)
        err = r.stderr.decode()
        assert err.startswith("mailgate: ") and len(err.splitlines()) == 1, err
        assert r.stdout == b""


def test_listener_usage(mailgate):
    s = mailgate(start=False)
    for args in ([], ["suspend"], ["pause", "default"], ["resume", "default", "5"],
                 ["suspend", "default", "soon"], ["suspend", "default", "5", "6"]):
        r = cli(s, "listener", *args)
        assert r.returncode == 2, (args, out(r))


# ------------------------------------------------------------------ no server

def test_no_server(mailgate):
    s = mailgate(start=False)
    for args in (["status"], ["status", "--json"], ["reload"],
                 ["listener", "suspend", "default"], ["listener", "resume", "default"]):
        r = cli(s, *args)
        assert r.returncode == 2, (args, out(r))
        assert r.stderr.decode() == no_server_message(s), (args, out(r))
        assert r.stdout == b""


def test_server_gone_after_stop(mailgate):
    s = mailgate()
    path = control_path(s)
    assert os.path.exists(path)
    s.stop()
    assert not os.path.exists(path), "the control socket outlived the server"
    r = cli(s, "status")
    assert r.returncode == 2, out(r)
    assert r.stderr.decode() == no_server_message(s)


# ------------------------------------------------------------------ the socket

def test_socket_mode(mailgate):
    s = mailgate()
    st = os.lstat(control_path(s))
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    assert st.st_uid == os.geteuid()


def test_socket_directory_created(mailgate):
    s = mailgate(start=False)
    d = os.path.join(str(s.sockdir), "run", "mailgate")
    s.settings["control"] = os.path.join(d, "control.sock")
    s.write_config()
    s.start()
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert cli(s, "status").returncode == 0


def test_second_server_refused(mailgate):
    s = mailgate()
    s2 = mailgate(start=False, top={"control": control_path(s)})
    s2.start(expect_ready=False)
    try:
        rc = s2.proc.wait(30)
    finally:
        if s2.proc.poll() is None:
            s2.proc.kill()
            s2.proc.wait()
    err = s2.stderr()
    s2.check_sanitizers()
    s2.proc = None
    assert rc == 2, err
    assert control_path(s) in err and "another mailgate server" in err, err
    # the running server's socket is untouched
    assert status_json(s)["pid"] == s.proc.pid


def test_stale_socket_replaced(mailgate):
    s = mailgate()
    path = control_path(s)
    s.kill()
    assert os.path.exists(path), "SIGKILL cannot have removed the socket"
    r = cli(s, "status")
    assert r.returncode == 2, out(r)
    assert "no mailgate server is running" in r.stderr.decode()
    s.start()
    d = status_json(s)
    assert d["pid"] == s.proc.pid
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600


def test_not_a_socket_refused(mailgate):
    s = mailgate(start=False)
    path = control_path(s)
    with open(path, "w") as f:
        f.write("not a socket\n")
    s.start(expect_ready=False)
    rc = s.proc.wait(30)
    err = s.stderr()
    s.check_sanitizers()
    s.proc = None
    assert rc == 2, err
    assert path in err and "not a socket" in err, err
    assert open(path).read() == "not a socket\n"


def test_raw_protocol(mailgate):
    """The wire form: one JSON line in, one out; unknown commands and junk refused."""
    s = mailgate()

    def ask(data):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.settimeout(15)
        c.connect(control_path(s))
        c.sendall(data)
        got = b""
        while not got.endswith(b"\n"):
            b = c.recv(65536)
            if not b:
                break
            got += b
        c.close()
        assert got.endswith(b"\n") and got.count(b"\n") == 1, got
        return json.loads(got)

    a = ask(b'{"command": "status", "args": {}}\n')
    assert a["ok"] is True and a["result"]["pid"] == s.proc.pid
    a = ask(b'{"command": "nosuch"}\n')
    assert a == {"ok": False, "error": "unknown command nosuch"}
    a = ask(b"not json\n")
    assert a["ok"] is False and a["error"].startswith("malformed request")
    a = ask(b'{"command": "status", "args": "' + b"x" * 70000 + b'"}\n')
    assert a["ok"] is False and "too large" in a["error"]
    t0 = time.monotonic()
    assert status_json(s)["sessions"] == 0
    assert time.monotonic() - t0 < 10
