"""Hostile input, class 1 of spec/hostile.md: SMTP smuggling.

Each case where bytes matter is sent three ways (hostilelib.py); the last test
checks the server still serves and holds nothing more than before the class."""

import re

import pytest

from conftest import unstuff
from hostilelib import ACCEPTED, WAYS, assert_left_clean, has_bare, hostile_server, seed_for, transaction


@pytest.fixture(scope="module")
def srv(mailgate_module):
    """Defaults (bare_crlf = reject, 10M, 1000 header lines, 50 recipients), no message cap."""
    return hostile_server(mailgate_module, policy={"max_messages_per_connection": 0})


@pytest.fixture(scope="module")
def srv_accept(mailgate_module):
    return hostile_server(mailgate_module, policy={"max_messages_per_connection": 0, "bare_crlf": "accept"})


FAKE_ENDS = {
    "lf.lf": b"\n.\n",
    "lf.crlf": b"\n.\r\n",
    "cr.cr": b"\r.\r",
    "cr.lf": b"\r.\n",
    "crlf.lf": b"\r\n.\n",
    "crlf.cr": b"\r\n.\r",
    "crlf-nul.crlf": b"\r\n\x00.\r\n",
    "crlf.cr-crlf": b"\r\n.\r\r\n",
    "lf.cr": b"\n.\r",
    "crlf.nul-crlf": b"\r\n.\x00\r\n",
    "crlf-sp.crlf": b"\r\n .\r\n",
    "crlf..crlf": b"\r\n..\r\n",
    "crlf.lf-crlf": b"\r\n.\n\r\n",
    "cr-crlf.cr": b"\r\r\n.\r",
}
SMUGGLED = (b"MAIL FROM:<evil@smuggle.example>\r\nRCPT TO:<victim@smuggle.example>\r\nDATA\r\n"
            b"Subject: smuggled\r\n\r\nsmuggled body\r\n")


def unstuff_variants(data):
    """What a server may store for data holding bare CR/LF: dot-unstuffing on
    CRLF lines (the strict reading), or also after a bare LF / bare CR."""
    return {unstuff(data),
            re.sub(rb"(^|\n)\.", rb"\1", data),
            re.sub(rb"(^|[\r\n])\.", rb"\1", data)}


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("fake", list(FAKE_ENDS), ids=list(FAKE_ENDS))
@pytest.mark.parametrize("mode", ["reject", "accept"])
def test_class1_smuggling(srv, srv_accept, mode, fake, way):
    s = srv if mode == "reject" else srv_accept
    payload = b"Subject: smuggle\r\n\r\nfirst part" + FAKE_ENDS[fake] + SMUGGLED
    assert b"\r\n.\r\n" not in payload and payload.endswith(b"\r\n")
    before = set(s.queue_mids())
    mark = s.log_mark()
    c = transaction(s)
    c.send(payload + b".\r\n", way, seed_for(mode, fake, way))
    r = c.reply()
    # exactly one reply for the message: the next one answers our NOOP
    c.cmd("NOOP", 250, "ok")
    c.quit()
    s.wait_closed_logged(c, mark)
    new = sorted(set(s.queue_mids()) - before)
    log = s.log_since(mark)
    assert "evil@smuggle.example" not in log and "victim@smuggle.example" not in log, log
    if mode == "reject" and has_bare(payload):
        assert r.raw == b"554 message body contains illegal bare CR/LF characters.\r\n", r
        assert new == [], "a refused message left %s in the queue" % new
        s.assert_failed_logged(c, mark, count=1)
    else:
        assert r.code == 250 and ACCEPTED.fullmatch(r.text), r
        assert new == [r.mid], "expected exactly one new message, got %s" % new
        sf = s.spool_file(r.mid)
        sf.check_envelope_clean()
        assert sf.field("sender") == "<sender@test.example>"
        assert sf.rcpts == [(0, "<rcpt@test.example>")]
        assert b"MAIL FROM:<evil@smuggle.example>" in sf.body
        assert sf.body in unstuff_variants(payload), \
            "stored %r, sent %r" % (sf.body, payload)
        if not has_bare(payload):
            assert sf.body == unstuff(payload)
    assert s.tmp_names() == []


def test_class1_zz_left_clean(srv, srv_accept):
    """The server still serves, and holds no more descriptors or heap than before."""
    assert_left_clean(srv, srv_accept)
