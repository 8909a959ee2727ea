"""Subscribe: check the request, then create or resume the subscription
(core.subscriptions), listen on its ack inbox and start delivery."""

from __future__ import annotations

import asyncio

from google.protobuf.message import DecodeError

from nss.nuid import next_nuid
from nss.pb import protocol_pb2 as pb
from nss.pb.wire import go_decode
from nss.server.context import ServerContext
from nss.server.core.subscriptions import attach, create_or_resume
from nss.server.ops.errors import (
    ERR_INVALID_ACK_WAIT,
    ERR_INVALID_MAX_INFLIGHT,
    ERR_INVALID_START,
    ERR_INVALID_SUB_REQ,
    ERR_INVALID_SUBJECT,
    ERR_MISSING_CLIENT,
    ERR_UNKNOWN_CLIENT,
)
from nss.stores.base import StoreError
from nss.subjects import valid_channel


def _error(err: str) -> pb.SubscriptionResponse:
    return pb.SubscriptionResponse(error=err)


def check_request(req: pb.SubscriptionRequest) -> str:
    """The error a malformed request gets, in the Go server's order; ''."""
    if not req.clientID:
        return ERR_MISSING_CLIENT
    if req.ackWaitInSecs <= 0:
        return ERR_INVALID_ACK_WAIT
    if req.maxInFlight <= 0:
        return ERR_INVALID_MAX_INFLIGHT
    if not 0 <= int(req.startPosition) <= 4:
        return ERR_INVALID_START
    if not valid_channel(req.subject):
        return ERR_INVALID_SUBJECT
    return ""


async def handle_subscribe(
    ctx: ServerContext, payload: bytes, reply: str, retried: bool = False
) -> pb.SubscriptionResponse | None:
    """The response; None when there is none (another partition's channel)
    or it comes later (a partitioned client not known yet)."""
    try:
        req = go_decode(pb.SubscriptionRequest, payload)
    except DecodeError:
        return _error(ERR_INVALID_SUB_REQ)
    err = check_request(req)
    if err:
        return _error(err)
    if ctx.partition is not None and not ctx.partition.owns(req.subject):
        return None  # another partition's channel: it answers, or the client times out
    client = ctx.clients.get(req.clientID)
    if client is None:
        if ctx.partition is None:
            return _error(ERR_UNKNOWN_CLIENT)
        if retried:
            return _error(ERR_INVALID_SUB_REQ)

        # the connect may still be queued here: retry once it is known
        async def retry() -> None:
            if await ctx.wait_client(req.clientID):
                ctx.io.acall(_retry, ctx, payload, reply)
            else:
                ctx.respond(reply, _error(ERR_INVALID_SUB_REQ))

        asyncio.get_running_loop().create_task(retry())
        return None
    try:
        ch = ctx.channel(req.subject)
    except (StoreError, ValueError) as e:
        return _error(str(e))
    try:
        created = create_or_resume(
            ch, client, req, "_INBOX." + next_nuid(), ctx.opts.replace_durable
        )
    except (StoreError, ValueError) as e:
        if not ch.has_active_subs():
            ctx.expiry.arm_inactivity(ch)
        return _error(str(e))
    sub = created.sub
    if created.replaced is not None:
        ctx.finish_removal(sub, created.replaced)
    try:
        await ch.subs_store.flush()
    except StoreError as e:
        # not durable, so not made: a new subscription is forgotten, a
        # resumed one goes back off line; the client gets the error
        ctx.log.error(f"[Client:{client.id}] Unable to store subscription on {ch.name}: {e}")
        ctx.take_offline(sub, unsubscribe=not created.resumed)
        return _error(str(e))
    attach(sub, client)
    ctx.listen_acks(sub)
    ctx.expiry.disarm_inactivity(ch)
    ctx.respond(reply, pb.SubscriptionResponse(ackInbox=sub.ack_inbox))
    sub.initialized = True
    ctx.log.debug(
        f"[Client:{client.id}] Started new subscription, subject={ch.name} "
        f"inbox={sub.inbox} queue={sub.qgroup} durable={sub.durable_name} "
        f"subid={sub.id} sent={sub.last_sent}"
    )
    if created.resumed:
        ctx.deliverer.redeliver_pending_now(sub)
    ctx.io.deliver_later(sub.group if sub.group is not None else sub)
    return None


async def _retry(ctx: ServerContext, payload: bytes, reply: str) -> None:
    resp = await handle_subscribe(ctx, payload, reply, True)
    if resp is not None:
        ctx.respond(reply, resp)
