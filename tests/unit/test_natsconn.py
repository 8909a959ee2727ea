"""The server's NATS protocol parser, fed the way a socket may split it."""

from __future__ import annotations

import asyncio

import pytest

from nss.nats.connection import (
    ConnectOptions,
    MaxPayloadError,
    NatsConnection,
    NoRespondersError,
    ServerAddr,
    _Sub,
)

STREAM = (
    b"INFO {\"max_payload\": 2048}\r\n"
    b"MSG foo 1 5\r\nhello\r\n"
    b"PING\r\n"
    b"MSG bar.baz 2 _INBOX.x 0\r\n\r\n"
    b"+OK\r\n"
    b"HMSG foo 1 _INBOX.y 18 23\r\nNATS/1.0\r\nA: b\r\n\r\nworld\r\n"
    b"MSG foo 1 10\r\nwith\r\nCRLF\r\n"
)
EXPECTED = [
    ("foo", "", b"hello"),
    ("bar.baz", "_INBOX.x", b""),
    ("foo", "_INBOX.y", b"world"),
    ("foo", "", b"with\r\nCRLF"),
]


def make_conn() -> tuple[NatsConnection, list[tuple[str, str, bytes]], list[bytes]]:
    conn = NatsConnection(ConnectOptions())
    got: list[tuple[str, str, bytes]] = []
    written: list[bytes] = []
    conn.connected = True
    conn._write = written.append  # type: ignore[method-assign]
    conn._subs[1] = _Sub(1, "foo", "", lambda s, r, p: got.append((s, r, p)))
    conn._subs[2] = _Sub(2, "bar.*", "", lambda s, r, p: got.append((s, r, p)))
    return conn, got, written


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, len(STREAM)])
def test_parser_handles_any_split(chunk: int) -> None:
    conn, got, written = make_conn()
    for i in range(0, len(STREAM), chunk):
        conn._on_data(STREAM[i : i + chunk])
    assert got == EXPECTED
    assert written == [b"PONG\r\n"]
    assert conn.server_info["max_payload"] == 2048
    assert not conn._parser.pending


def test_callback_error_does_not_break_parsing() -> None:
    conn, got, _ = make_conn()
    errors: list[str] = []
    conn._on_error = errors.append
    def boom(s: str, r: str, p: bytes) -> None:
        raise ValueError("bad")

    conn._subs[1] = _Sub(1, "foo", "", boom)
    conn._on_data(STREAM)
    assert got == [("bar.baz", "_INBOX.x", b"")]
    assert len(errors) == 3


async def test_no_responders_status_fails_the_request() -> None:
    conn = NatsConnection(ConnectOptions())
    conn.connected = True
    conn._loop = asyncio.get_running_loop()
    conn._write = lambda data: None  # type: ignore[method-assign]
    inbox, fut = conn.new_request_inbox()
    sid = conn._resp_sid
    hdr = b"NATS/1.0 503\r\n\r\n"
    conn._on_data(b"HMSG %s %d %d %d\r\n%s\r\n" % (inbox.encode(), sid, len(hdr), len(hdr), hdr))
    with pytest.raises(NoRespondersError):
        await fut


def test_server_addresses() -> None:
    a = ServerAddr.parse("nats://u:p%40ss@0.0.0.0:4333")
    assert (a.host, a.port, a.user, a.password) == ("127.0.0.1", 4333, "u", "p@ss")
    assert ServerAddr.parse("localhost").port == 4222
    assert ServerAddr.parse("tls://[::]:5222").host == "::1"


def test_publish_over_max_payload_is_refused() -> None:
    conn = NatsConnection(ConnectOptions())
    conn.connected = True
    conn.max_payload = 10
    with pytest.raises(MaxPayloadError):
        conn.publish("foo", b"x" * 11)


def test_server_errors_reach_the_log_as_they_came() -> None:
    conn, _, _ = make_conn()
    errors: list[str] = []
    conn._on_error = errors.append
    conn._on_data(b"-ERR 'Stale Connection'\r\n")
    assert errors == ["NATS server: -ERR 'Stale Connection'"]
