"""Hostile input, class 2 of spec/hostile.md: reject, then keep reading.

Each case where bytes matter is sent three ways (hostilelib.py); the last test
checks the server still serves and holds nothing more than before the class."""


import pytest

from hostilelib import WAYS, assert_left_clean, hostile_server, seed_for, transaction


@pytest.fixture(scope="module")
def srv_small(mailgate_module):
    return hostile_server(mailgate_module, policy={"max_messages_per_connection": 0, "max_message_size": "4K"},
                          limits={"max_header_lines": 10})


HIDDEN = (b"MAIL FROM:<evil@hidden.example>\r\nRCPT TO:<victim@hidden.example>\r\nDATA\r\n"
          b"QUIT\r\nRSET\r\n")


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("limit", ["size", "headers"])
def test_class2_rest_is_dropped(srv_small, limit, way):
    s = srv_small
    if limit == "size":
        data = b"Subject: big\r\n\r\n" + b"y" * 70 + b"\r\n"
        data += (b"z" * 70 + b"\r\n") * 60 + HIDDEN + (b"w" * 70 + b"\r\n") * 10 + HIDDEN
        expect = b"552 #5.3.4 message size exceeds limit\r\n"
    else:
        data = b"".join(b"X-H-%d: v\r\n" % i for i in range(30)) + HIDDEN
        data += b"\r\nbody\r\n" + HIDDEN
        expect = b"552 #5.3.4 message header size exceeds limit\r\n"
    before = s.queue_names()
    mark = s.log_mark()
    c = transaction(s)
    c.send(data + b".\r\n", way, seed_for(limit, way))
    r = c.reply()
    assert r.raw == expect, r
    c.cmd("NOOP", 250, "ok")
    c.cmd("MAIL FROM:<after@test.example>", 250)     # no nested transaction from the data
    c.quit()
    s.wait_closed_logged(c, mark)
    s.assert_failed_logged(c, mark, count=1)
    assert "hidden.example" not in s.log_since(mark)
    assert s.queue_names() == before and s.tmp_names() == []


def test_class2_zz_left_clean(srv_small):
    """The server still serves, and holds no more descriptors or heap than before."""
    assert_left_clean(srv_small)
