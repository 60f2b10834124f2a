"""Hostile input, class 8 of spec/hostile.md: ESMTP parameters.

Each case where bytes matter is sent three ways (hostilelib.py); the last test
checks the server still serves and holds nothing more than before the class."""

import re

import pytest

from hostilelib import WAYS, assert_left_clean, hostile_server, seed_for


@pytest.fixture(scope="module")
def srv(mailgate_module):
    """Defaults (bare_crlf = reject, 10M, 1000 header lines, 50 recipients), no message cap."""
    return hostile_server(mailgate_module, policy={"max_messages_per_connection": 0})


A = "MAIL FROM:<a@test.example>"
PARAM_CASES = {
    # id: (line, code, exact text | regex | None (any text))
    "size-empty": (A + " SIZE=", 501, re.compile(r"Unknown value ?")),
    "size-negative": (A + " SIZE=-1", 501, "Unknown value -1"),
    "size-plus": (A + " SIZE=+5", 501, "Unknown value +5"),
    "size-float": (A + " SIZE=1e3", 501, "Unknown value 1e3"),
    "size-hex": (A + " SIZE=0x10", 501, "Unknown value 0x10"),
    # "=" may not appear in an esmtp-value (RFC 5321 4.1.2): a syntax error is fair too
    "size-eq-eq": (A + " SIZE=1=2", 501,
                   re.compile(r"Unknown value 1=2|#5\.5\.2 syntax error \S+")),
    "body-empty": (A + " BODY=", 501, re.compile(r"Unknown value ?")),
    "body-9bit": (A + " BODY=9BIT", 501, "Unknown value 9BIT"),
    "body-long": (A + " BODY=" + "V" * 100, 501, "Unknown value " + "V" * 64),
    "unknown-bare": (A + " FOO", 504, "Command parameter FOO unrecognized"),
    "unknown-empty": (A + " FOO=", 504, "Command parameter FOO unrecognized"),
    "unknown-long": (A + " " + "K" * 100 + "=1", 504,
                     "Command parameter " + "K" * 64 + " unrecognized"),
    "envid-crlf-xtext": (A + " ENVID=x+0D+0A+00y", 504, "Command parameter ENVID unrecognized"),
    "ret": (A + " RET=FULL", 504, "Command parameter RET unrecognized"),
    "smtputf8": (A + " SMTPUTF8", 504, "Command parameter SMTPUTF8 unrecognized"),
    "size-repeated": (A + " SIZE=10 SIZE=20", None, None),
    "body-repeated": (A + " BODY=7BIT BODY=8BITMIME", None, None),
    "no-keyword": (A + " =5", None, None),
    "no-space": (A + "SIZE=5", 501, re.compile(r"#5\.5\.2 syntax error.*")),
    "rcpt-notify": ("RCPT TO:<b@test.example> NOTIFY=NEVER", 504,
                    "Command parameter NOTIFY unrecognized"),
    "rcpt-orcpt": ("RCPT TO:<b@test.example> ORCPT=rfc822;b+40test.example", 504,
                   "Command parameter ORCPT unrecognized"),
    "rcpt-size": ("RCPT TO:<b@test.example> SIZE=10", 504, "Command parameter SIZE unrecognized"),
}
GOOD_PARAMS = {
    "body-7bit": A + " BODY=7BIT",
    "body-8bitmime-lower": A + " body=8bitmime",
    "size-and-body": A + " SIZE=100 BODY=8BITMIME",
    "size-lower": A + " size=100",
    "size-zero": A + " SIZE=0",
}


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("case", list(PARAM_CASES))
def test_class8_bad_parameters(srv, case, way):
    line, code, text = PARAM_CASES[case]
    c = srv.connect()
    c.ehlo()
    if line.startswith("RCPT"):
        c.mail("a@test.example")
    mark = srv.log_mark()
    c.line(line, way, seed_for("param", case, way))
    r = c.reply()
    if code is None:
        assert r.code in (501, 504), r
    else:
        assert r.code == code, r
        if isinstance(text, re.Pattern):
            assert text.fullmatch(r.text), r
        elif text is not None:
            assert r.text == text, r
    srv.assert_failed_logged(c, mark, count=1)
    if line.startswith("MAIL"):
        c.cmd("RCPT TO:<b@test.example>", 503, "#5.5.1 MAIL first")    # nothing started
    else:
        c.cmd("DATA", 503, "#5.5.1 RCPT first")
    c.quit()
    assert "\r" not in srv.log_since(mark) and "\x00" not in srv.log_since(mark)


@pytest.mark.parametrize("kw", [b"F\x01O", b"F\xffO", b"F\x7fO"], ids=["ctl", "8bit", "del"])
def test_class8_parameter_echo_is_sanitized(srv, kw):
    c = srv.connect()
    c.ehlo()
    c.line(A.encode() + b" " + kw + b"=1")
    r = c.reply()
    assert r.code in (500, 501, 504), r
    if r.code == 504:
        assert r.text == "Command parameter F?O unrecognized", r
    c.quit()


@pytest.mark.parametrize("case", list(GOOD_PARAMS))
def test_class8_good_parameters(srv, case):
    c = srv.connect()
    c.ehlo()
    c.cmd(GOOD_PARAMS[case], 250, "sender <a@test.example> ok")
    c.rcpt("b@test.example")
    r = c.data(b"Subject: p\r\n\r\nx\r\n.\r\n")
    assert r.code == 250
    c.quit()
    sf = srv.spool_file(r.mid)
    sf.check_envelope_clean()
    if "8bitmime" in case or case == "size-and-body":
        assert sf.field("body") == "8BITMIME"


def test_class8_zz_left_clean(srv):
    """The server still serves, and holds no more descriptors or heap than before."""
    assert_left_clean(srv)
