"""Connect: register a client, or refuse a duplicate client ID.

A client ID already registered is probed on its heartbeat inbox first
(protocol.md §13): a live one keeps its ID, a dead one is replaced."""

from __future__ import annotations

import asyncio

from google.protobuf.message import DecodeError

from nss.nats.connection import NatsError, NoRespondersError
from nss.pb import protocol_pb2 as pb
from nss.pb.wire import go_decode
from nss.server.context import ServerContext
from nss.server.core.clients import client_info, valid_client_id
from nss.server.core.model import Client
from nss.server.delivery import sendable
from nss.server.ops.close import close_client
from nss.server.ops.errors import (
    ERR_CLIENT_REGISTERED,
    ERR_INVALID_CLIENT_ID,
    ERR_INVALID_CONN_REQ,
)
from nss.stores.base import StoreError

# Duplicate client ID probe timeout (protocol.md §13).
DUP_CHECK_TIMEOUT = 0.5


async def handle_connect(
    ctx: ServerContext, payload: bytes, reply: str
) -> pb.ConnectResponse | None:
    """The response, or None when a duplicate probe answers later."""
    try:
        req = go_decode(pb.ConnectRequest, payload)
    except DecodeError:
        req = None
    if req is None or not req.heartbeatInbox:
        ctx.log.error(f"Invalid connection request: {payload[:64]!r}")
        return pb.ConnectResponse(error=ERR_INVALID_CONN_REQ)
    if not valid_client_id(req.clientID):
        return pb.ConnectResponse(error=ERR_INVALID_CLIENT_ID)
    cid = req.clientID
    existing = ctx.clients.get(cid)
    if existing is not None:
        if cid in ctx.clients.checking:
            return pb.ConnectResponse(error=ERR_CLIENT_REGISTERED)
        ctx.clients.checking.add(cid)
        asyncio.get_running_loop().create_task(_probe_duplicate(ctx, existing, req, reply))
        return None
    return await register_client(ctx, req)


async def _probe_duplicate(
    ctx: ServerContext, old: Client, req: pb.ConnectRequest, reply: str
) -> None:
    """Ask the registered client's heartbeat inbox whether it is still alive."""
    alive = True
    try:
        if not sendable(old.hb_inbox):  # would break our NATS connection
            await asyncio.sleep(DUP_CHECK_TIMEOUT)
            raise TimeoutError
        await ctx.conn.request(old.hb_inbox, b"", DUP_CHECK_TIMEOUT)
    except (TimeoutError, NoRespondersError):
        alive = False
    except NatsError:
        alive = True
    if alive:
        ctx.clients.checking.discard(req.clientID)
        ctx.log.error(f"[Client:{req.clientID}] Connect failed; already connected")
        ctx.respond(reply, pb.ConnectResponse(error=ERR_CLIENT_REGISTERED))
        return
    ctx.io.acall(_replace_client, ctx, old, req, reply)


async def _replace_client(
    ctx: ServerContext, old: Client, req: pb.ConnectRequest, reply: str
) -> None:
    ctx.clients.checking.discard(req.clientID)
    if ctx.clients.get(old.id) is old:
        ctx.log.debug(f"[Client:{old.id}] Replacing old client (heartbeat probe failed)")
        await close_client(ctx, old)
    if ctx.clients.get(req.clientID) is not None:
        ctx.respond(reply, pb.ConnectResponse(error=ERR_CLIENT_REGISTERED))
        return
    ctx.respond(reply, await register_client(ctx, req))


async def register_client(ctx: ServerContext, req: pb.ConnectRequest) -> pb.ConnectResponse:
    info = client_info(req)
    try:
        ctx.store.add_client(info)
        await ctx.store.flush()
    except StoreError as e:
        return pb.ConnectResponse(error=str(e))
    client = Client.from_info(info)
    ctx.clients.add(client)
    if ctx.heartbeats is not None:
        ctx.heartbeats.arm(client, ctx.opts.hb_interval)
    si = ctx.info
    resp = pb.ConnectResponse(
        pubPrefix=si.Publish,
        subRequests=si.Subscribe,
        unsubRequests=si.Unsubscribe,
        closeRequests=si.Close,
        subCloseRequests=si.SubClose,
        protocol=1,
    )
    if req.protocol >= 1:
        resp.pingRequests = si.Discovery + ".pings"
        resp.pingInterval = req.pingInterval
        resp.pingMaxOut = req.pingMaxOut
    ctx.log.debug(f"[Client:{client.id}] Connected (Inbox={client.hb_inbox})")
    return resp
