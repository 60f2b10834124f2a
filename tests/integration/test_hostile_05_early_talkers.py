"""Hostile input, class 5 of spec/hostile.md: early talkers, pipelining abuse.

Each case where bytes matter is sent three ways (hostilelib.py); the last test
checks the server still serves and holds nothing more than before the class."""


import pytest

from hostilelib import assert_left_clean, hostile_server


@pytest.fixture(scope="module")
def srv(mailgate_module):
    """Defaults (bare_crlf = reject, 10M, 1000 header lines, 50 recipients), no message cap."""
    return hostile_server(mailgate_module, policy={"max_messages_per_connection": 0})


@pytest.fixture(scope="module")
def srv_delay(mailgate_module):
    return hostile_server(mailgate_module,
                          policy={"greet_delay": "1s", "max_messages_per_connection": 0})


@pytest.mark.parametrize("early", [b"EHLO early.example\r\n", b"E", b"\r\n",
                                   b"EHLO a\r\nMAIL FROM:<a@test.example>\r\n",
                                   b"GET / HTTP/1.0\r\n\r\n"],
                         ids=["ehlo", "one-byte", "crlf", "pipelined", "http"])
def test_class5_early_talker(srv_delay, early):
    s = srv_delay
    before = s.queue_names()
    mark = s.log_mark()
    c = s.raw_connect()
    c.send(early)
    r = c.reply()
    assert r.raw == b"554 SMTP synchronization error\r\n", r
    c.expect_closed()
    s.assert_failed_logged(None, mark, count=1)
    assert s.queue_names() == before


@pytest.mark.parametrize("after", [b"X", b"\r\n", b"Subject: x\r\n\r\nbody\r\n.\r\n",
                                   b".\r\nMAIL FROM:<evil@early.example>\r\n"],
                         ids=["one-byte", "crlf", "message", "dot-and-mail"])
def test_class5_text_before_354(srv, after):
    s = srv
    before = s.queue_names()
    c = s.connect()
    c.ehlo()
    mark = s.log_mark()
    c.send(b"MAIL FROM:<a@test.example>\r\nRCPT TO:<b@test.example>\r\nDATA\r\n" + after)
    c.expect(250)
    c.expect(250)
    c.expect(554, "SMTP synchronization error")
    c.expect_closed()
    s.assert_failed_logged(c, mark, count=1)
    assert s.queue_names() == before
    assert "evil@early.example" not in s.log_since(mark)


def test_class5_zz_left_clean(srv_delay):
    """The server still serves, and holds no more descriptors or heap than before."""
    assert_left_clean(srv_delay)
