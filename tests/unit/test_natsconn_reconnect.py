"""Reconnect pool of the server's NATS connection, as nats.go keeps it.

The Go server connected with ``-ns`` to one member of a NATS cluster fails
over to the others: nats.go adds the INFO ``connect_urls`` to its pool and
tries a server it has not tried recently at once (stan.js "connection_lost
when replaced" counts on the streaming server moving within milliseconds).
"""

from __future__ import annotations

import asyncio
import json

from nss.nats.connection import ConnectOptions, NatsConnection, ServerAddr, learn_servers


class FakeNats:
    """Just enough of a NATS server: INFO, then PONG for every PING."""

    def __init__(self, **info: object) -> None:
        self.info = {"server_id": "fake", "max_payload": 1048576, **info}
        self.accepted = 0
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> FakeNats:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _client(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.append(w)
        w.write(b"INFO " + json.dumps(self.info).encode() + b"\r\n")
        while line := await r.readline():
            if line.startswith(b"PING"):
                w.write(b"PONG\r\n")
        w.close()

    def send(self, data: bytes) -> None:
        """Write raw protocol bytes to every connected client."""
        for w in self._writers:
            if not w.is_closing():
                w.write(data)

    async def kill(self) -> None:
        self.server.close()
        for w in self._writers:
            w.close()
        await self.server.wait_closed()


def test_connect_urls_join_the_pool_once_with_the_credentials() -> None:
    conn = NatsConnection(ConnectOptions(servers=["nats://u:p@127.0.0.1:4222"]))
    learn_servers(conn._addrs, {"connect_urls": ["127.0.0.1:4222", "10.0.0.2:4223"]})
    conn._on_data(b'INFO {"connect_urls":["10.0.0.2:4223","10.0.0.3:4224"]}\r\n')
    assert [(a.host, a.port) for a in conn._addrs] == [
        ("127.0.0.1", 4222),
        ("10.0.0.2", 4223),
        ("10.0.0.3", 4224),
    ]
    assert conn._addrs[2] == ServerAddr("nats", "10.0.0.3", 4224, "u", "p")


async def test_fails_over_at_once_to_a_discovered_peer() -> None:
    b = await FakeNats().start()
    a = await FakeNats(connect_urls=[f"127.0.0.1:{b.port}"]).start()
    reconnected = asyncio.Event()
    # A long reconnect wait: only a server tried recently waits for it.
    opts = ConnectOptions(servers=[f"nats://127.0.0.1:{a.port}"], reconnect_wait=30)
    conn = NatsConnection(opts, on_reconnect=reconnected.set)
    await conn.connect()
    try:
        await a.kill()
        await asyncio.wait_for(reconnected.wait(), 5)
        assert b.accepted == 1
        assert conn.connected
        await conn.flush(2)
    finally:
        await conn.close()
        await b.kill()


async def test_protocol_garbage_is_reported_and_the_connection_recovers() -> None:
    """A stream the parser cannot read is a broken connection, as in nats.go:
    say so and reconnect, instead of a reader that dies and a connection that
    still claims to be up."""
    srv = await FakeNats().start()
    errors: list[str] = []
    reconnected = asyncio.Event()
    opts = ConnectOptions(servers=[f"nats://127.0.0.1:{srv.port}"], reconnect_wait=0.05)
    conn = NatsConnection(opts, on_reconnect=reconnected.set, on_error=errors.append)
    await conn.connect()
    try:
        srv.send(b"MSG foo\r\n")
        await asyncio.wait_for(reconnected.wait(), 5)
        assert srv.accepted == 2
        assert any("protocol error" in e and "MSG foo" in e for e in errors), errors
        await conn.flush(2)
    finally:
        await conn.close()
        await srv.kill()
