"""Client close: the client's subscriptions go off line (durables stay),
then the client record is removed."""

from __future__ import annotations

from google.protobuf.message import DecodeError

from nss.pb import protocol_pb2 as pb
from nss.pb.wire import go_decode
from nss.server.context import ServerContext
from nss.server.core.model import Channel, Client
from nss.server.ops.errors import ERR_INVALID_CLOSE_REQ, ERR_UNKNOWN_CLIENT
from nss.stores.base import StoreError


async def handle_close(ctx: ServerContext, payload: bytes, reply: str) -> pb.CloseResponse:
    try:
        req = go_decode(pb.CloseRequest, payload)
    except DecodeError:
        return pb.CloseResponse(error=ERR_INVALID_CLOSE_REQ)
    client = ctx.clients.get(req.clientID)
    if client is None:
        return pb.CloseResponse(error=ERR_UNKNOWN_CLIENT)
    try:
        await close_client(ctx, client)
    except StoreError as e:
        return pb.CloseResponse(error=str(e))
    return pb.CloseResponse()


async def close_client(ctx: ServerContext, client: Client) -> None:
    ctx.clients.remove(client.id)
    ctx.store.delete_client(client.id)
    chans: dict[Channel, None] = {}
    for sub in list(client.subs):
        chans[sub.channel] = None
        ctx.take_offline(sub, unsubscribe=False)
    for ch in chans:
        await ch.subs_store.flush()
    await ctx.store.flush()
    ctx.log.debug(f"[Client:{client.id}] Closed")


async def close_if_current(ctx: ServerContext, client: Client) -> None:
    """Close a client unless it was replaced or closed meanwhile."""
    if ctx.clients.get(client.id) is client:
        await close_client(ctx, client)
