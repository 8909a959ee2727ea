"""The STAN protocol operations, one module each, and the table that maps
the server's request subjects to them.

A handler takes the context, the request bytes and the reply subject, and
returns the response proto (None: no answer, or one it sent itself because
messages must follow it, as after a subscribe). Requests that change state
run on the ordered I/O path; pings and publishes are handled in the NATS
callback (a publish is queued there for the batch).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from nss.hot import PublishFastPath
from nss.server.context import Handler, ServerContext
from nss.server.ops.close import handle_close
from nss.server.ops.connect import handle_connect
from nss.server.ops.heartbeat import ClientHeartbeats
from nss.server.ops.publish import PublishHandler
from nss.server.ops.subscribe import handle_subscribe
from nss.server.ops.unsubscribe import handle_subclose, handle_unsubscribe

Operation = Callable[[ServerContext, bytes, str], Awaitable[Any]]


def ordered(ctx: ServerContext, op: Operation, stopping: Callable[[], bool]) -> Handler:
    """The NATS callback of an operation: queue it on the I/O path (unless
    the server is stopping: then there is no answer, as from a Go server
    closing its connections) and send what it returns."""

    async def run(payload: bytes, reply: str) -> None:
        resp = await op(ctx, payload, reply)
        if resp is not None:
            ctx.respond(reply, resp)

    def on_request(_subject: str, reply: str, payload: bytes) -> None:
        if not stopping():
            ctx.io.acall(run, payload, reply)

    return on_request


def protocol_table(
    ctx: ServerContext, heartbeats: ClientHeartbeats, stopping: Callable[[], bool]
) -> list[tuple[str, Handler]]:
    """(subject, callback) for every request subject the server serves."""
    info = ctx.info

    def on_ping(_subject: str, reply: str, payload: bytes) -> None:
        if reply:
            resp = heartbeats.handle_ping(payload)
            if resp is not None:
                ctx.respond(reply, resp)

    handler = PublishHandler(ctx)
    # the usual publish never reaches the Python handler (nss.hot)
    publish = PublishFastPath(ctx.clients.by_conn, handler.valid, ctx.direct.publish, handler)
    handler.stats = ctx.publish_stats = publish
    if ctx.partition is not None:
        publish_subjects = [f"{info.Publish}.{name}" for name in ctx.partition.names]
    else:
        publish_subjects = [info.Publish + ".>"]
    return [
        *((s, publish) for s in publish_subjects),
        (info.Discovery, ordered(ctx, handle_connect, stopping)),
        (info.Discovery + ".pings", on_ping),
        (info.Subscribe, ordered(ctx, handle_subscribe, stopping)),
        (info.Unsubscribe, ordered(ctx, handle_unsubscribe, stopping)),
        (info.SubClose, ordered(ctx, handle_subclose, stopping)),
        (info.Close, ordered(ctx, handle_close, stopping)),
    ]
