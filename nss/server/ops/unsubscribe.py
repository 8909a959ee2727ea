"""Unsubscribe and subscription close: the same request on two subjects.
An unsubscribed durable is forgotten; a closed one stays, offline."""

from __future__ import annotations

from google.protobuf.message import DecodeError

from nss.pb import protocol_pb2 as pb
from nss.pb.wire import go_decode
from nss.server.context import ServerContext
from nss.server.core.subscriptions import find_by_inbox
from nss.server.ops.errors import (
    ERR_INVALID_SUB,
    ERR_INVALID_UNSUB_REQ,
    ERR_UNKNOWN_CHANNEL,
    ERR_UNKNOWN_CLIENT,
)
from nss.stores.base import StoreError


def _error(err: str) -> pb.SubscriptionResponse:
    return pb.SubscriptionResponse(error=err)


async def handle_unsubscribe(
    ctx: ServerContext, payload: bytes, reply: str
) -> pb.SubscriptionResponse | None:
    return await _take_offline(ctx, payload, close=False)


async def handle_subclose(
    ctx: ServerContext, payload: bytes, reply: str
) -> pb.SubscriptionResponse | None:
    return await _take_offline(ctx, payload, close=True)


async def _take_offline(
    ctx: ServerContext, payload: bytes, close: bool
) -> pb.SubscriptionResponse | None:
    try:
        req = go_decode(pb.UnsubscribeRequest, payload)
    except DecodeError:
        return _error(ERR_INVALID_UNSUB_REQ)
    if ctx.partition is not None and not ctx.partition.owns(req.subject):
        return None
    ch = ctx.channels.get(req.subject)
    if ch is None:
        return _error(ERR_UNKNOWN_CHANNEL)
    sub = find_by_inbox(ch, req.inbox)
    if sub is None:
        return _error(ERR_INVALID_SUB)
    if sub.client is None or sub.client.id != req.clientID:
        return _error(ERR_UNKNOWN_CLIENT)
    what = "Closing" if close else "Unsubscribing"
    ctx.log.debug(
        f"[Client:{req.clientID}] {what} subscription subject={ch.name} "
        f"inbox={sub.inbox} durable={sub.durable_name} subid={sub.id}"
    )
    try:
        ctx.take_offline(sub, unsubscribe=not close)
        await ch.subs_store.flush()
    except StoreError as e:
        return _error(str(e))
    return pb.SubscriptionResponse()
