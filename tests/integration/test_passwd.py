"""`mailgate passwd [USER]` (spec/cli.md): one line of standard input is the
password, the output a users-file line with a yescrypt hash that libcrypt (here
through Python's crypt module, when this Python still has it) verifies."""

import os
import pwd
import re
import subprocess
import warnings

import pytest

from conftest import SAN_ENV, check_cli_sanitizers, mailgate_bin

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # deprecated in 3.11, gone in 3.13
except ImportError:
    crypt = None

# $y$<params>$<salt>$<43 characters of crypt base64>
YESCRYPT = re.compile(r"\$y\$[./0-9A-Za-z]+\$[./0-9A-Za-z]+\$[./0-9A-Za-z]{43}")


def run(args, input):
    b = mailgate_bin()
    if not os.path.exists(b):
        pytest.fail("mailgate binary not found at %s" % b)
    env = dict(os.environ)
    for k, v in SAN_ENV.items():
        env.setdefault(k, v)
    r = subprocess.run([b, "passwd"] + list(args), input=input, capture_output=True,
                       timeout=60, env=env)
    check_cli_sanitizers(r)
    return r


def out(r):
    return r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")


def line_of(r, user):
    assert r.returncode == 0, out(r)
    text = r.stdout.decode()
    assert text.endswith("\n") and text.count("\n") == 1, text
    name, _, hash_ = text[:-1].partition(":")
    assert name == user, text
    assert YESCRYPT.fullmatch(hash_), text
    return hash_


def verifies(password, hash_):
    if crypt is None:
        return None
    return crypt.crypt(password, hash_) == hash_


def test_prints_a_yescrypt_line_that_verifies():
    h = line_of(run(["alice"], b"secret\n"), "alice")
    if crypt is None:
        pytest.skip("no crypt module in this Python: the format was checked")
    assert verifies("secret", h)
    assert not verifies("secret\n", h)
    assert not verifies("Secret", h)


def test_a_fresh_salt_each_time():
    a = line_of(run(["alice"], b"secret\n"), "alice")
    b = line_of(run(["alice"], b"secret\n"), "alice")
    assert a != b


@pytest.mark.parametrize("stdin", [b"secret", b"secret\r\n", b"secret\nand more\n"])
def test_only_the_first_line_without_its_end(stdin):
    h = line_of(run(["bob"], stdin), "bob")
    if crypt is not None:
        assert verifies("secret", h)


def test_spaces_are_part_of_the_password():
    h = line_of(run(["bob"], b" pass word \n"), "bob")
    if crypt is not None:
        assert verifies(" pass word ", h)
        assert not verifies("pass word", h)


def test_user_defaults_to_the_login_name():
    me = pwd.getpwuid(os.getuid()).pw_name
    line_of(run([], b"secret\n"), me)


@pytest.mark.parametrize("stdin", [b"\n", b"", b"\r\n", b"sec\0ret\n", b"x" * 512 + b"\n"])
def test_refused_passwords_exit_2(stdin):
    r = run(["alice"], stdin)
    assert r.returncode == 2, out(r)
    assert r.stdout == b"", out(r)
    assert r.stderr, "no reason given"


def test_longest_password_taken():
    h = line_of(run(["alice"], b"x" * 511 + b"\n"), "alice")
    if crypt is not None:
        assert verifies("x" * 511, h)


@pytest.mark.parametrize("user", ["a:b", "tab\tname", "cr\rname", "two words", "", "x" * 256])
def test_refused_user_names_exit_2(user):
    r = run([user], b"secret\n")
    assert r.returncode == 2, out(r)
    assert r.stdout == b"", out(r)


def test_too_many_arguments_exit_2():
    r = run(["alice", "bob"], b"secret\n")
    assert r.returncode == 2, out(r)
    assert b"usage" in r.stderr


def test_help():
    r = run(["--help"], b"")
    assert r.returncode == 0, out(r)
    assert "mailgate passwd [USER]" in out(r)
    b = mailgate_bin()
    r = subprocess.run([b, "help"], capture_output=True, timeout=60)
    assert r.returncode == 0
    assert b"passwd" in r.stdout
