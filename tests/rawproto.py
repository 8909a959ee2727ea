"""Raw protocol helpers for the integration tests.

``StanClient`` speaks the protocol correctly; these helpers send requests by
hand (malformed payloads, odd field combinations) and read the raw replies.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client as NATS

from nss.pb import protocol_pb2 as pb

CID = "test-cluster"
DISCOVER = f"_STAN.discover.{CID}"
PINGS = f"{DISCOVER}.pings"
PUB = f"_STAN.pub.{CID}"
SUB = f"_STAN.sub.{CID}"
UNSUB = f"_STAN.unsub.{CID}"
SUBCLOSE = f"_STAN.subclose.{CID}"
CLOSE = f"_STAN.close.{CID}"

INVALID_CLIENT_ID = (
    "stan: invalid clientID: only alphanumeric and `-` or `_` characters allowed"
)


async def raw_connect(url: str) -> NATS:
    return await nats.connect(url, allow_reconnect=False)


async def request(nc: NATS, subject: str, payload: bytes, timeout: float = 2.0) -> bytes:
    msg = await nc.request(subject, payload, timeout=timeout)
    return msg.data


async def expect_no_reply(nc: NATS, subject: str, payload: bytes, within: float = 0.3) -> None:
    """Send a request and assert that nobody answers within ``within`` s."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    try:
        await nc.publish(subject, payload, reply=inbox)
        await nc.flush()
        try:
            msg = await sub.next_msg(timeout=within)
        except nats.errors.TimeoutError:
            return
        raise AssertionError(f"unexpected reply on {subject}: {msg.data!r}")
    finally:
        await sub.unsubscribe()


async def connect_raw(nc: NATS, **fields: Any) -> pb.ConnectResponse:
    data = await request(nc, DISCOVER, pb.ConnectRequest(**fields).SerializeToString())
    return pb.ConnectResponse.FromString(data)


async def subscribe_raw(nc: NATS, **fields: Any) -> pb.SubscriptionResponse:
    """A SubscriptionRequest with sane defaults for the fields not given."""
    fields.setdefault("inbox", nc.new_inbox())
    fields.setdefault("maxInFlight", 10)
    fields.setdefault("ackWaitInSecs", 30)
    data = await request(nc, SUB, pb.SubscriptionRequest(**fields).SerializeToString())
    return pb.SubscriptionResponse.FromString(data)


async def publish_raw(nc: NATS, channel: str, pm: pb.PubMsg, subject: str = "") -> pb.PubAck:
    data = await request(nc, subject or f"{PUB}.{channel}", pm.SerializeToString())
    return pb.PubAck.FromString(data)


async def eventually(
    fn: Callable[[], Awaitable[Any]], timeout: float = 5.0, interval: float = 0.02
) -> Any:
    """Await ``fn()`` until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        v = await fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(interval)
