"""The NATS protocol parser on its own: bytes in, callbacks out, no socket.

As nats.py tests its ``Parser``: a recorder stands in for the connection, and
streams are fed the ways a socket may cut them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nss import hot
from nss.hot import pure
from nss.nats.errors import NatsError, ProtocolError
from nss.nats.parser import MAX_CONTROL_LINE, Parser

# every test runs against the Python parser and the compiled one (when built)
_IMPLS = [pytest.param(pure.Parser, id="pure")]
if hot.COMPILED:
    _IMPLS.append(pytest.param(hot.Parser, id="compiled"))


@pytest.fixture(autouse=True, params=_IMPLS)
def _parser_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(globals(), "Parser", request.param)

Event = tuple[Any, ...]

HDR = b"NATS/1.0\r\nA: b\r\n\r\n"
STREAM = (
    b'INFO {"server_id":"x","max_payload":2048}\r\n'
    b"MSG foo 1 5\r\nhello\r\n"
    b"PING\r\n"
    b"MSG bar.baz 22 _INBOX.x 0\r\n\r\n"
    b"+OK\r\n"
    b"HMSG foo 1 _INBOX.y %d %d\r\n%sworld\r\n"
    b"PONG\r\n"
    b"MSG foo 1 10\r\nwith\r\nCRLF\r\n"
    b"HMSG a.b 3 %d %d\r\n%s\r\n"
    b"-ERR 'Stale Connection'\r\n"
) % (len(HDR), len(HDR) + 5, HDR, len(HDR), len(HDR), HDR)
EXPECTED: list[Event] = [
    ("info", {"server_id": "x", "max_payload": 2048}),
    ("msg", 1, b"foo", b"", b"hello"),
    ("ping",),
    ("msg", 22, b"bar.baz", b"_INBOX.x", b""),
    ("ok",),
    ("hmsg", 1, b"foo", b"_INBOX.y", HDR, b"world"),
    ("pong",),
    ("msg", 1, b"foo", b"", b"with\r\nCRLF"),
    ("hmsg", 3, b"a.b", b"", HDR, b""),
    ("err", "'Stale Connection'"),
]


class Recorder:
    """Stands in for the connection: writes down every callback."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.parser = Parser(
            on_msg=lambda sid, s, r, p: self.events.append(("msg", sid, s, r, p)),
            on_hmsg=lambda sid, s, r, h, p: self.events.append(("hmsg", sid, s, r, h, p)),
            on_ping=lambda: self.events.append(("ping",)),
            on_pong=lambda: self.events.append(("pong",)),
            on_info=lambda info: self.events.append(("info", info)),
            on_err=lambda text: self.events.append(("err", text)),
            on_ok=lambda: self.events.append(("ok",)),
        )

    def feed(self, *chunks: bytes) -> list[Event]:
        for c in chunks:
            self.parser.feed(c)
        return self.events


def test_one_chunk_holds_every_operation() -> None:
    rec = Recorder()
    assert rec.feed(STREAM) == EXPECTED
    assert rec.parser.pending == 0


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_split_at_every_byte_boundary(cut: int) -> None:
    rec = Recorder()
    assert rec.feed(STREAM[:cut], STREAM[cut:]) == EXPECTED
    assert rec.parser.pending == 0


def test_fed_one_byte_at_a_time() -> None:
    rec = Recorder()
    assert rec.feed(*(STREAM[i : i + 1] for i in range(len(STREAM)))) == EXPECTED
    assert rec.parser.pending == 0


def test_three_way_splits_around_a_message_with_headers() -> None:
    start = STREAM.index(b"HMSG foo")
    end = STREAM.index(b"PONG")
    for a in range(start, end):
        for b in range(a + 1, end + 1):
            rec = Recorder()
            assert rec.feed(STREAM[:a], STREAM[a:b], STREAM[b:]) == EXPECTED, (a, b)


def test_many_messages_in_one_chunk_keep_their_order() -> None:
    stream = b"".join(b"MSG s.%d %d r.%d %d\r\n%s\r\n" % (i, i, i, i, b"x" * i) for i in range(500))
    rec = Recorder()
    rec.feed(stream)
    assert rec.events == [("msg", i, b"s.%d" % i, b"r.%d" % i, b"x" * i) for i in range(500)]


def test_an_incomplete_operation_waits_for_the_rest() -> None:
    rec = Recorder()
    rec.feed(b"MSG foo 1 5\r\nhel")
    assert rec.events == []
    assert rec.parser.pending == len(b"MSG foo 1 5\r\nhel")
    rec.feed(b"lo\r\nPI")
    assert rec.events == [("msg", 1, b"foo", b"", b"hello")]
    assert rec.parser.pending == 2
    rec.feed(b"NG\r\n")
    assert rec.events[-1] == ("ping",)
    assert rec.parser.pending == 0


@pytest.mark.parametrize("reply", [b"", b"_INBOX.big"])
def test_big_payload_arriving_in_many_reads(reply: bytes) -> None:
    payload = bytes(range(256)) * (4 * 1024 * 1024 // 256) + b"\r\nMSG x 1 1\r\n"
    head = b"MSG big %d %s%s%d\r\n" % (9, reply, b" " if reply else b"", len(payload))
    stream = head + payload + b"\r\nPING\r\n"
    rec = Recorder()
    step = 64 * 1024
    for i in range(0, len(stream), step):
        rec.parser.feed(stream[i : i + step])
    assert rec.events == [("msg", 9, b"big", reply, payload), ("ping",)]
    assert rec.parser.pending == 0


def test_headers_with_a_status_line_reach_the_callback_whole() -> None:
    hdr = b"NATS/1.0 503\r\n\r\n"
    rec = Recorder()
    rec.feed(b"HMSG _INBOX.a.b 4 %d %d\r\n%s\r\n" % (len(hdr), len(hdr), hdr))
    assert rec.events == [("hmsg", 4, b"_INBOX.a.b", b"", hdr, b"")]


def test_info_err_ping_pong_ok() -> None:
    info = {"server_id": "NA", "connect_urls": ["10.0.0.1:4222"], "headers": True}
    rec = Recorder()
    rec.feed(
        b"INFO " + json.dumps(info).encode() + b"\r\n"
        b"-ERR 'Permissions Violation for Publish to \"x\"'\r\n"
        b"PING\r\nPONG\r\n+OK\r\n"
    )
    assert rec.events == [
        ("info", info),
        ("err", "'Permissions Violation for Publish to \"x\"'"),
        ("ping",),
        ("pong",),
        ("ok",),
    ]


def test_ok_is_ignored_without_a_callback() -> None:
    got: list[str] = []
    p = Parser(
        on_msg=lambda *a: got.append("msg"),
        on_hmsg=lambda *a: got.append("hmsg"),
        on_ping=lambda: got.append("ping"),
        on_pong=lambda: got.append("pong"),
        on_info=lambda i: got.append("info"),
        on_err=lambda t: got.append("err"),
    )
    p.feed(b"+OK\r\nPING\r\n")
    assert got == ["ping"]


GARBAGE = [
    b"HELLO\r\n",
    b"\r\n",
    b"MSG\r\n",
    b"MSG foo\r\n",
    b"MSG foo 1\r\n",
    b"MSG foo 1 a b c\r\n",
    b"MSG foo x 5\r\nhello\r\n",
    b"MSG foo 1 five\r\nhello\r\n",
    b"MSG foo 1 -5\r\n",
    b"HMSG foo 1 5\r\n",
    b"HMSG foo 1 9 5\r\nhello\r\n",
    b"HMSG foo 1 -1 5\r\nhello\r\n",
    b"HMSG foo 1 x 5\r\nhello\r\n",
    b"INFO {not json\r\n",
    b"INFO [1, 2]\r\n",
    b"INFO\r\n",
    b"MSG foo 1 3\r\nhello\r\n",  # payload longer than its size: "lo" is no operation
]


@pytest.mark.parametrize("garbage", GARBAGE)
def test_garbage_is_a_protocol_error(garbage: bytes) -> None:
    rec = Recorder()
    rec.feed(b"PING\r\n")
    with pytest.raises(ProtocolError) as exc:
        rec.feed(garbage)
    assert isinstance(exc.value, NatsError)
    # the error quotes what could not be read, shortened
    assert len(str(exc.value)) < 120


def test_error_names_the_line() -> None:
    rec = Recorder()
    with pytest.raises(ProtocolError, match=r"unknown operation: b'HELLO world'"):
        rec.feed(b"HELLO world\r\n")
    with pytest.raises(ProtocolError, match=r"malformed MSG: b'MSG foo 1 -5'"):
        Recorder().feed(b"MSG foo 1 -5\r\n")


def test_a_control_line_that_never_ends_is_a_protocol_error() -> None:
    rec = Recorder()
    rec.feed(b"INFO " + b"x" * (MAX_CONTROL_LINE // 2))
    with pytest.raises(ProtocolError, match="control line too long"):
        rec.feed(b"x" * (MAX_CONTROL_LINE // 2 + 10))


def test_reset_starts_a_new_stream_after_an_error() -> None:
    rec = Recorder()
    with pytest.raises(ProtocolError):
        rec.feed(b"MSG foo 1 3\r\nabc\r\nBOGUS\r\nMSG foo 1 5\r\nhel")
    assert rec.events == [("msg", 1, b"foo", b"", b"abc")]
    rec.parser.reset()
    assert rec.parser.pending == 0
    rec.feed(b"PING\r\n")
    assert rec.events[-1] == ("ping",)


def test_a_raising_callback_loses_nothing_and_repeats_nothing() -> None:
    """What follows the message whose callback raised is parsed with the next
    feed; that message itself is not delivered again."""
    seen: list[bytes] = []

    def on_msg(sid: int, subject: bytes, reply: bytes, payload: bytes) -> None:
        seen.append(payload)
        if payload == b"boom":
            raise RuntimeError("callback failed")

    p = Parser(
        on_msg=on_msg,
        on_hmsg=lambda *a: None,
        on_ping=lambda: seen.append(b"PING"),
        on_pong=lambda: None,
        on_info=lambda i: None,
        on_err=lambda t: None,
    )
    with pytest.raises(RuntimeError):
        p.feed(b"MSG a 1 1\r\n1\r\nMSG a 1 4\r\nboom\r\nMSG a 1 1\r\n2\r\nPI")
    p.feed(b"NG\r\n")
    assert seen == [b"1", b"boom", b"2", b"PING"]
    assert p.pending == 0
