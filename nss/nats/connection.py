"""A lean asyncio NATS client for the server's own connection.

Why not nats-py on the hot path: nats-py hands every message to a per
subscription queue and awaits a coroutine per message, and builds a
coroutine per publish. A STAN server moves four NATS messages per STAN
message (PubMsg in, PubAck out, MsgProto out, Ack in), so that per-message
machinery would cap throughput well below the goal. Here messages are parsed
in bulk from each socket read and handed to plain synchronous callbacks, and
everything published during one event-loop turn goes out in a single write.

The parsing itself is ``nss.nats.parser``; this is the socket around it.
Semantics follow what the Go server asks of its connections: reconnect
forever with a 250 ms wait, no buffering of publishes while disconnected,
and NATS "no responders" (status 503) surfaced to requesters so that a probe
of a vanished client fails at once instead of waiting for its timeout.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

from nss import redact
from nss.hot import Parser, append_pub, append_pubacks, append_pubs
from nss.nats.errors import (
    MaxPayloadError,
    NatsError,
    NoRespondersError,
    NotConnectedError,
    ProtocolError,
)
from nss.nats.parser import RawHandler
from nss.nuid import NUID

__all__ = [
    "ConnectOptions",
    "MaxPayloadError",
    "MsgCallback",
    "NatsConnection",
    "NatsError",
    "NoRespondersError",
    "NotConnectedError",
    "ProtocolError",
    "ServerAddr",
]

MsgCallback = Callable[[str, str, bytes], None]

_CRLF = b"\r\n"
_PING = b"PING\r\n"
_PONG = b"PONG\r\n"
_READ_SIZE = 256 * 1024


@dataclass
class ServerAddr:
    scheme: str
    host: str
    port: int
    user: str = ""
    password: str = ""

    @classmethod
    def parse(cls, url: str) -> ServerAddr:
        url = url.strip()
        if "://" not in url:
            url = "nats://" + url
        u = urlparse(url)
        host = u.hostname or "127.0.0.1"
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        return cls(
            scheme=u.scheme or "nats",
            host=host,
            port=u.port or 4222,
            user=unquote(u.username or ""),
            password=unquote(u.password or ""),
        )


def learn_servers(addrs: list[ServerAddr], info: dict[str, Any]) -> bool:
    """Add the cluster's other servers (INFO ``connect_urls``) to the
    reconnect pool ``addrs``, as nats.go does for the Go server's
    connections. True when the pool grew (the NATS cluster gained a server)."""
    urls = info.get("connect_urls")
    if not urls:
        return False
    grew = False
    first = addrs[0]
    known = {(a.host, a.port) for a in addrs}
    for url in urls:
        a = ServerAddr.parse(url)
        if (a.host, a.port) not in known:
            known.add((a.host, a.port))
            a.scheme, a.user, a.password = first.scheme, first.user, first.password
            addrs.append(a)
            grew = True
    return grew


@dataclass
class _Sub:
    sid: int
    subject: str
    queue: str
    cb: MsgCallback


@dataclass
class ConnectOptions:
    servers: list[str] = field(default_factory=lambda: ["nats://127.0.0.1:4222"])
    name: str = ""
    user: str = ""
    password: str = ""
    token: str = ""
    tls: ssl.SSLContext | None = None
    tls_hostname: str | None = None
    reconnect_wait: float = 0.25
    connect_timeout: float = 5.0


def _never(_subject: str, _reply: str, _payload: bytes) -> None:
    """The callback of a raw subscription, which the parser calls directly."""


def _connect_fields(opts: ConnectOptions, addr: ServerAddr, tls: bool) -> dict[str, Any]:
    """The CONNECT of a handshake; credentials in the URL win over the
    options, and a user alone in the URL is a token (as nats.go reads it)."""
    connect: dict[str, Any] = {
        "verbose": False,
        "pedantic": False,
        "tls_required": tls,
        "name": opts.name,
        "lang": "python-nss",
        "version": "0.25.6",
        "protocol": 1,
        "headers": True,
        "no_responders": True,
        "echo": True,
    }
    user = addr.user or opts.user
    password = addr.password or opts.password
    if user and not addr.password and not opts.password and not opts.user:
        connect["auth_token"] = user
    elif user:
        connect["user"] = user
        connect["pass"] = password
    elif opts.token:
        connect["auth_token"] = opts.token
    return connect


class _Feed(asyncio.Protocol):
    """The connection's protocol once the handshake is done: every read goes
    to the parser as it arrives."""

    def __init__(self, conn: NatsConnection) -> None:
        self._conn = conn
        assert conn._loop is not None
        self.closed: asyncio.Future[None] = conn._loop.create_future()

    def data_received(self, data: bytes) -> None:
        self._conn._on_data(data)

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        self._conn._transport_lost(self)


class NatsConnection:
    """One NATS connection; callbacks run synchronously in the event loop."""

    def __init__(
        self,
        opts: ConnectOptions,
        *,
        on_disconnect: Callable[[], None] | None = None,
        on_reconnect: Callable[[], None] | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.opts = opts
        self._addrs = [ServerAddr.parse(s) for s in opts.servers]
        self._on_disconnect = on_disconnect
        self._on_reconnect = on_reconnect
        self._on_error = on_error
        # after the handshake the transport feeds the parser (_Feed); the
        # handshake's StreamWriter is kept (collected, it closes the transport)
        self._transport: asyncio.BaseTransport | None = None
        self._feed_proto: _Feed | None = None
        self._leftover = b""  # what the handshake read past its PONG
        self._handshake_writer: asyncio.StreamWriter | None = None
        self._wbuf = bytearray()
        self._flush_scheduled = False
        self._subs: dict[int, _Sub] = {}
        self._next_sid = 1
        self._pongs: list[asyncio.Future[None]] = []
        self._nuid = NUID()
        self._resp_prefix = ""
        self._resp_sid = 0
        self._resp_futs: dict[str, asyncio.Future[bytes]] = {}
        self._closed = False
        self.connected = False
        self.server_info: dict[str, Any] = {}
        self.max_payload = 1024 * 1024
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        # called when an INFO update shows new servers in the NATS cluster
        self.on_discovered: Callable[[], None] | None = None
        self._cur = 0  # index in _addrs of the server connected to
        self._last_try: dict[int, float] = {}  # index -> loop time of last attempt
        self._parser = Parser(
            on_msg=self._on_msg,
            on_hmsg=self._on_hmsg,
            on_ping=self._on_ping,
            on_pong=self._on_pong,
            on_info=self._on_info,
            on_err=self._on_err,
            on_callback_error=self._callback_failed,
        )

    # ------------------------------------------------------------ connect
    async def connect(self) -> None:
        self._loop = asyncio.get_running_loop()
        last: BaseException | None = None
        for idx, addr in enumerate(self._addrs):
            self._last_try[idx] = self._loop.time()
            try:
                await asyncio.wait_for(self._open(addr), self.opts.connect_timeout)
                self._cur = idx
                break
            except (TimeoutError, OSError, NatsError, ssl.SSLError) as e:
                last = e
        else:
            where = ", ".join(redact.url(u) for u in self.opts.servers)
            raise NatsError(f"could not connect to NATS at {where}: {last}")
        self._start_reader()

    async def _open(self, addr: ServerAddr) -> None:
        reader, writer = await asyncio.open_connection(addr.host, addr.port, limit=_READ_SIZE * 4)
        try:
            line = await reader.readline()
            if not line.startswith(b"INFO "):
                raise NatsError(f"unexpected greeting from NATS server: {line[:80]!r}")
            info = json.loads(line[5:])
            want_tls = self.opts.tls is not None or addr.scheme == "tls" or info.get("tls_required")
            if want_tls:
                ctx = self.opts.tls or ssl.create_default_context()
                await writer.start_tls(ctx, server_hostname=self.opts.tls_hostname or addr.host)
            connect = _connect_fields(self.opts, addr, bool(want_tls))
            writer.write(b"CONNECT " + json.dumps(connect).encode() + _CRLF + _PING)
            await writer.drain()
            while True:
                line = await reader.readline()
                if not line:
                    raise NatsError("connection closed by NATS server during handshake")
                if line.startswith(b"PONG"):
                    break
                if line.startswith(b"-ERR"):
                    raise NatsError("NATS server: " + line[5:].decode(errors="replace").strip())
                if line.startswith(b"PING"):
                    writer.write(_PONG)
                # +OK / INFO updates during the handshake are ignored
        except BaseException:
            writer.close()
            raise
        self.server_info = info
        learn_servers(self._addrs, info)
        self.max_payload = int(info.get("max_payload", self.max_payload))
        # From here on each read goes straight to the parser: no StreamReader
        # buffer and no reader task between the socket and the callbacks.
        transport = writer.transport
        transport.pause_reading()
        self._leftover = bytes(reader._buffer)
        proto = _Feed(self)
        transport.set_protocol(proto)
        self._transport, self._feed_proto = transport, proto
        self._handshake_writer = writer
        self.connected = True
        self._parser.reset()
        # re-establish subscriptions (reconnect) before anything else is sent
        out = bytearray()
        for sub in self._subs.values():
            out += f"SUB {sub.subject} {sub.queue} {sub.sid}\r\n".encode()
        if out:
            writer.write(bytes(out))

    def _start_reader(self) -> None:
        t, leftover, self._leftover = self._transport, self._leftover, b""
        if t is not None and leftover:
            self._on_data(leftover)
        if t is not None and self._transport is t:
            t.resume_reading()  # type: ignore[attr-defined]

    def _on_data(self, data: bytes) -> None:
        """Hand what one read returned to the parser."""
        try:
            self._parser.feed(data)
        except ProtocolError as e:
            # as nats.go: the stream cannot be trusted any more, start over
            if self._on_error:
                self._on_error(f"NATS protocol error, reconnecting: {e}")
            self._lost()

    def _detach(self) -> tuple[asyncio.BaseTransport | None, _Feed | None]:
        """Forget the transport (not connected any more); it and its protocol."""
        t, proto = self._transport, self._feed_proto
        self.connected = False
        self._transport = self._feed_proto = self._handshake_writer = None
        self._leftover = b""
        return t, proto

    def _transport_lost(self, proto: _Feed) -> None:
        if proto is self._feed_proto:
            self._lost()

    def _lost(self) -> None:
        if not self.connected:
            return
        t, _ = self._detach()
        if t is not None:
            t.close()
        self._wbuf.clear()
        for f in self._pongs:
            if not f.done():
                f.set_exception(NotConnectedError("connection lost"))
        self._pongs.clear()
        for f in self._resp_futs.values():
            if not f.done():
                f.set_exception(NotConnectedError("connection lost"))
        self._resp_futs.clear()
        if self._closed:
            return
        if self._on_disconnect:
            self._on_disconnect()
        assert self._loop is not None
        self._reconnect_task = self._loop.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        # As nats.go: go round the pool starting after the server just lost,
        # waiting only until reconnect_wait has passed since the last attempt
        # on the same server (a cluster peer is tried at once).
        assert self._loop is not None
        i = self._cur + 1
        while not self._closed:
            idx = i % len(self._addrs)
            i += 1
            wait = self._last_try.get(idx, -1e9) + self.opts.reconnect_wait - self._loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._last_try[idx] = self._loop.time()
            try:
                await asyncio.wait_for(self._open(self._addrs[idx]), self.opts.connect_timeout)
            except (TimeoutError, OSError, NatsError, ssl.SSLError):
                continue
            self._cur = idx
            self._start_reader()
            if self._on_reconnect:
                self._on_reconnect()
            return

    async def close(self) -> None:
        self._closed = True
        if self._reconnect_task:
            self._reconnect_task.cancel()
        if self.connected:
            try:
                await self.flush(1.0)
            except (TimeoutError, NatsError):
                pass
        t, proto = self._detach()
        if t is not None and proto is not None:
            t.close()
            try:
                await asyncio.wait_for(asyncio.shield(proto.closed), 1.0)
            except (TimeoutError, OSError, ssl.SSLError):
                pass

    # ------------------------------------------------------------ from the parser
    def _on_msg(self, sid: int, subject: bytes, reply: bytes, payload: bytes) -> None:
        sub = self._subs.get(sid)
        if sub is not None:
            try:
                sub.cb(subject.decode(), reply.decode() if reply else "", payload)
            except Exception as e:  # never let a callback break the parser
                self._callback_failed(subject, e)

    def _on_hmsg(self, sid: int, subject: bytes, reply: bytes, hdr: bytes, payload: bytes) -> None:
        sub = self._subs.get(sid)
        if sub is None:
            return
        try:
            raw = self._parser.handlers.get(sid)
            if sid == self._resp_sid:
                self._on_response_status(subject.decode(), hdr, payload)
            elif raw is not None:
                raw(subject, reply, payload)
            else:
                sub.cb(subject.decode(), reply.decode() if reply else "", payload)
        except Exception as e:
            self._callback_failed(subject, e)

    def _on_ping(self) -> None:
        self._write(_PONG)

    def _on_pong(self) -> None:
        if self._pongs:
            f = self._pongs.pop(0)
            if not f.done():
                f.set_result(None)

    def _on_info(self, info: dict[str, Any]) -> None:
        self.server_info.update(info)
        if learn_servers(self._addrs, info) and self.on_discovered is not None:
            self.on_discovered()

    def _on_err(self, text: str) -> None:
        if self._on_error:
            self._on_error(f"NATS server: -ERR {text}")

    def _callback_failed(self, subject: bytes, e: Exception) -> None:
        if self._on_error:
            self._on_error(f"callback for {subject.decode(errors='replace')} failed: {e!r}")

    def _on_response_status(self, subject: str, hdr: bytes, payload: bytes) -> None:
        token = subject[len(self._resp_prefix) :]
        fut = self._resp_futs.pop(token, None)
        if fut is None or fut.done():
            return
        first = hdr.split(_CRLF, 1)[0].split()
        status = first[1] if len(first) > 1 else b""
        if status == b"503":
            fut.set_exception(NoRespondersError("no responders"))
        else:
            fut.set_result(payload)

    # ------------------------------------------------------------ writing
    def _write(self, data: bytes) -> None:
        if not self.connected:
            return
        self._wbuf += data
        if not self._flush_scheduled:
            self._schedule_flush()

    def _schedule_flush(self) -> None:  # what a loop turn wrote goes in one write
        self._flush_scheduled = True
        assert self._loop is not None
        self._loop.call_soon(self._flush_out)

    def _flush_out(self) -> None:
        self._flush_scheduled = False
        self.flush_now()
        self._wbuf.clear()  # what no transport took (disconnected) is dropped

    def flush_now(self) -> None:
        """Write what is buffered now, not at the end of the loop turn. The
        flush already scheduled stays: it writes whatever comes after."""
        if self._transport is not None and self._wbuf:
            self._transport.write(bytes(self._wbuf))  # type: ignore[attr-defined]
            self._wbuf.clear()

    def publish(self, subject: str, payload: bytes, reply: str = "") -> None:
        """Queue a message; it goes out with everything else of this loop turn.

        Dropped silently while disconnected (the Go server disables reconnect
        buffering too: stale responses are worse than none)."""
        if not self.connected:
            return
        n = len(payload)
        if n > self.max_payload:
            raise MaxPayloadError("nats: maximum payload exceeded")
        append_pub(self._wbuf, subject, reply, payload)
        if not self._flush_scheduled:
            self._schedule_flush()

    def publish_many(self, subject: str, payloads: list[bytes]) -> None:
        """Several messages to one subject, all or (MaxPayloadError) none."""
        if not self.connected:
            return
        if not append_pubs(self._wbuf, subject, payloads, self.max_payload):
            raise MaxPayloadError("nats: maximum payload exceeded")
        if not self._flush_scheduled:
            self._schedule_flush()

    def publish_pubacks(self, pubacks: list[tuple[str, str, Any, str]]) -> None:
        """A batch's PubAcks in one call (``nss.hot.append_pubacks``)."""
        if not self.connected:
            return
        append_pubacks(self._wbuf, pubacks)
        if not self._flush_scheduled:
            self._schedule_flush()

    def subscribe(self, subject: str, cb: MsgCallback, queue: str = "") -> int:
        sid = self._next_sid
        self._next_sid += 1
        self._subs[sid] = _Sub(sid, subject, queue, cb)
        self._write(f"SUB {subject} {queue} {sid}\r\n".encode())
        return sid

    def subscribe_raw(self, subject: str, cb: RawHandler, queue: str = "") -> int:
        """Like ``subscribe``, for the hot subjects: ``cb`` gets the subject
        and reply as the bytes the parser read, called by the parser itself."""
        sid = self.subscribe(subject, _never, queue)
        self._parser.handlers[sid] = cb
        return sid

    def unsubscribe(self, sid: int) -> None:
        self._parser.handlers.pop(sid, None)
        if self._subs.pop(sid, None) is not None:
            self._write(f"UNSUB {sid}\r\n".encode())

    async def flush(self, timeout: float = 5.0) -> None:
        """Round trip to the NATS server: everything sent before is processed."""
        if not self.connected:
            raise NotConnectedError("not connected")
        assert self._loop is not None
        fut: asyncio.Future[None] = self._loop.create_future()
        self._pongs.append(fut)
        self._write(_PING)
        await asyncio.wait_for(fut, timeout)

    # ------------------------------------------------------------ requests
    def _ensure_resp_sub(self) -> None:
        if self._resp_sid:
            return
        self._resp_prefix = "_INBOX." + self._nuid.next() + "."
        self._resp_sid = self.subscribe(self._resp_prefix + "*", self._on_response)

    def _on_response(self, subject: str, reply: str, payload: bytes) -> None:
        token = subject[len(self._resp_prefix) :]
        fut = self._resp_futs.pop(token, None)
        if fut is not None and not fut.done():
            fut.set_result(payload)

    def new_request_inbox(self) -> tuple[str, asyncio.Future[bytes]]:
        """A reply subject and the future its first response resolves."""
        if not self.connected:
            raise NotConnectedError("not connected")
        self._ensure_resp_sub()
        assert self._loop is not None
        token = self._nuid.next()
        fut: asyncio.Future[bytes] = self._loop.create_future()
        self._resp_futs[token] = fut
        return self._resp_prefix + token, fut

    def cancel_request(self, inbox: str) -> None:
        self._resp_futs.pop(inbox[len(self._resp_prefix) :], None)

    async def request(self, subject: str, payload: bytes, timeout: float) -> bytes:
        inbox, fut = self.new_request_inbox()
        self.publish(subject, payload, inbox)
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self.cancel_request(inbox)
