"""Liveness both ways: the server's heartbeats to each client's inbox, and
the clients' pings (protocol 1) to the server."""

from __future__ import annotations

import asyncio

from google.protobuf.message import DecodeError

from nss.nats.connection import NatsError
from nss.pb import protocol_pb2 as pb
from nss.pb.wire import go_decode
from nss.server.context import ServerContext
from nss.server.core.model import Client
from nss.server.delivery import sendable
from nss.server.ops.close import close_if_current
from nss.server.ops.errors import ERR_CLIENT_REPLACED

# A failed client that pings again is probed at once.
_PROBE_NOW = 0.001


class ClientHeartbeats:
    """One timer per client: probe its heartbeat inbox every ``hb_interval``;
    after ``hb_fail_count`` failures in a row the client is closed. While a
    client fails, its subscriptions get no new messages (redeliveries to a
    queue group go to the healthy members)."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def arm(self, client: Client, delay: float) -> None:
        if self.ctx.closed or client.closed:
            return
        if client.hb_handle is not None:
            client.hb_handle.cancel()
        loop = asyncio.get_running_loop()
        client.hb_handle = loop.call_later(delay, self._beat, client)

    def _beat(self, client: Client) -> None:
        client.hb_handle = None
        if client.closed or self.ctx.closed:
            return
        client.hb_task = asyncio.get_running_loop().create_task(self._probe(client))

    async def _probe(self, client: Client) -> None:
        ctx = self.ctx
        s = ctx.opts
        try:
            if not sendable(client.hb_inbox):  # would break our NATS connection
                await asyncio.sleep(s.hb_timeout)
                raise TimeoutError
            await ctx.conn.request(client.hb_inbox, b"", s.hb_timeout)
            ok = True
        except (TimeoutError, NatsError):
            ok = False
        if client.closed:
            return
        if ok:
            if client.failed_hb:
                client.failed_hb = 0
                _flag_failed(client, False)
        else:
            client.failed_hb += 1
            if client.failed_hb == 1:
                _flag_failed(client, True)
            ctx.log.debug(
                f"[Client:{client.id}] Timed out on heartbeats (count={client.failed_hb})"
            )
            if client.failed_hb > s.hb_fail_count:
                ctx.log.info(f"[Client:{client.id}] Timed out on heartbeats, closing")
                ctx.io.acall(close_if_current, ctx, client)
                return
        self.arm(client, s.hb_interval)

    def handle_ping(self, payload: bytes) -> pb.PingResponse | None:
        """Answered at once, off the I/O path, as the protocol asks; None:
        no answer (undecodable ping)."""
        if not payload:
            return None
        try:
            ping = go_decode(pb.Ping, payload)
        except DecodeError:
            return None
        client = self.ctx.clients.by_conn_id(ping.connID)
        if client is None:
            return pb.PingResponse(error=ERR_CLIENT_REPLACED)
        if client.failed_hb:
            self.arm(client, _PROBE_NOW)
        return pb.PingResponse()


def _flag_failed(client: Client, failed: bool) -> None:
    for sub in client.subs:
        sub.failed_hb = failed
