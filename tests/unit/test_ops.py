"""The protocol operations driven with request bytes, answered with response
protos: a MEMORY store and a fake transport that records what the server
publishes. No NATS server, no process, no socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from nss.log import get_logger
from nss.options import StoreLimits, StreamingOptions
from nss.pb import protocol_pb2 as pb
from nss.server.context import ServerContext
from nss.server.core.channels import ChannelRegistry
from nss.server.core.clients import ClientRegistry
from nss.server.ops import protocol_table
from nss.server.ops.close import handle_close
from nss.server.ops.connect import handle_connect
from nss.server.ops.errors import (
    ERR_CLIENT_REPLACED,
    ERR_INVALID_ACK_WAIT,
    ERR_INVALID_CLIENT_ID,
    ERR_INVALID_CONN_REQ,
    ERR_INVALID_PUB_REQ,
    ERR_INVALID_SUB,
    ERR_UNKNOWN_CHANNEL,
    ERR_UNKNOWN_CLIENT,
)
from nss.server.ops.heartbeat import ClientHeartbeats
from nss.server.ops.subscribe import handle_subscribe
from nss.server.ops.unsubscribe import handle_subclose, handle_unsubscribe
from nss.server.startup import server_subjects
from nss.stores.base import StoreError
from nss.stores.memory import MemoryStore


class FakeTransport:
    """Records publishes; heartbeat requests to ``alive`` inboxes succeed."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.subs: dict[int, tuple[str, Callable[[str, str, bytes], None]]] = {}
        self.alive: set[str] = set()

    def publish(self, subject: str, payload: bytes) -> None:
        self.sent.append((subject, payload))

    def subscribe(self, subject: str, cb: Callable[[str, str, bytes], None]) -> int:
        sid = len(self.subs) + 1
        self.subs[sid] = (subject, cb)
        return sid

    def subscribe_raw(self, subject: str, cb: Callable[[bytes, bytes, bytes], None]) -> int:
        """As the NATS connection's: the callback gets subject and reply as bytes."""
        return self.subscribe(subject, lambda s, r, p: cb(s.encode(), r.encode(), p))

    def unsubscribe(self, sid: int) -> None:
        self.subs.pop(sid, None)

    async def request(self, subject: str, payload: bytes, timeout: float) -> bytes:
        if subject in self.alive:
            return b""
        raise TimeoutError

    def to(self, subject: str) -> list[bytes]:
        return [p for s, p in self.sent if s == subject]

    def inject(self, subject: str, payload: bytes, reply: str = "") -> None:
        """A message arriving on a subject the server listens on."""
        for subj, cb in list(self.subs.values()):
            if subj == subject or (subj.endswith(".>") and subject.startswith(subj[:-1])):
                cb(subject, reply, payload)


@pytest.fixture
async def ctx() -> AsyncIterator[ServerContext]:
    opts = StreamingOptions(cluster_id="test")
    store = MemoryStore(StoreLimits())
    info = server_subjects("test", "_STAN.discover")
    store.init(info)
    c = ServerContext(
        opts, FakeTransport(), store, info, ClientRegistry(), ChannelRegistry(store), get_logger()
    )
    c.heartbeats = ClientHeartbeats(c)
    c.io.start()
    yield c
    c.closed = c.expiry.closed = True
    await c.io.drain_and_stop()
    for client in list(c.clients.by_id.values()):
        client.stop_heartbeats()


def fake(ctx: ServerContext) -> FakeTransport:
    assert isinstance(ctx.conn, FakeTransport)
    return ctx.conn


async def until(cond: Callable[[], Any], timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def connect(ctx: ServerContext, cid: str = "c1", conn_id: bytes = b"") -> Any:
    req = pb.ConnectRequest(
        clientID=cid, heartbeatInbox=f"hb.{cid}", connID=conn_id or cid.encode(), protocol=1
    )
    return await handle_connect(ctx, req.SerializeToString(), "reply")


def sub_req(**kw: Any) -> bytes:
    base: dict[str, Any] = {
        "clientID": "c1",
        "subject": "foo",
        "inbox": "in.1",
        "maxInFlight": 10,
        "ackWaitInSecs": 30,
        "startPosition": pb.First,
    }
    base.update(kw)
    return pb.SubscriptionRequest(**base).SerializeToString()


async def subscribe(ctx: ServerContext, reply: str = "sr", **kw: Any) -> pb.SubscriptionResponse:
    """Subscribe responds itself (messages must follow the response)."""
    assert await handle_subscribe(ctx, sub_req(**kw), reply) is None
    return pb.SubscriptionResponse.FromString(fake(ctx).to(reply)[-1])


# ------------------------------------------------------------ connect
async def test_connect_answers_the_server_subjects(ctx: ServerContext) -> None:
    resp = await connect(ctx)
    assert resp.error == ""
    assert resp.pubPrefix == "_STAN.pub.test" and resp.subRequests == "_STAN.sub.test"
    assert resp.pingRequests == "_STAN.discover.test.pings" and resp.protocol == 1
    assert ctx.clients.get("c1") is not None


@pytest.mark.parametrize(
    "payload, error",
    [
        (b"\xff\xff", ERR_INVALID_CONN_REQ),
        (pb.ConnectRequest(clientID="c1").SerializeToString(), ERR_INVALID_CONN_REQ),
        (
            pb.ConnectRequest(clientID="bad id", heartbeatInbox="hb").SerializeToString(),
            ERR_INVALID_CLIENT_ID,
        ),
    ],
)
async def test_connect_errors(ctx: ServerContext, payload: bytes, error: str) -> None:
    resp = await handle_connect(ctx, payload, "reply")
    assert resp is not None and resp.error == error


async def test_duplicate_client_id_live_refused_dead_replaced(ctx: ServerContext) -> None:
    await connect(ctx)
    fake(ctx).alive.add("hb.c1")
    assert await connect(ctx) is None  # answered after the probe
    await until(lambda: fake(ctx).to("reply"))
    assert pb.ConnectResponse.FromString(fake(ctx).to("reply")[-1]).error == (
        "stan: clientID already registered"
    )
    fake(ctx).alive.clear()
    old = ctx.clients.get("c1")
    assert await connect(ctx, conn_id=b"new") is None
    await until(lambda: len(fake(ctx).to("reply")) == 2)
    assert pb.ConnectResponse.FromString(fake(ctx).to("reply")[-1]).error == ""
    new = ctx.clients.get("c1")
    assert new is not None and new is not old and new.conn_id == b"new"


# ------------------------------------------------------------ publish
async def test_publish_is_stored_delivered_and_acked(ctx: ServerContext) -> None:
    await connect(ctx)
    assert (await subscribe(ctx)).ackInbox
    table = dict(protocol_table(ctx, ctx.heartbeats, lambda: False))  # type: ignore[arg-type]
    publish = table["_STAN.pub.test.>"]
    pm = pb.PubMsg(clientID="c1", connID=b"c1", guid="g1", subject="foo", data=b"hello")
    publish(b"_STAN.pub.test.foo", b"ack.reply", pm.SerializeToString())
    await until(lambda: fake(ctx).to("ack.reply"))
    assert pb.PubAck.FromString(fake(ctx).to("ack.reply")[0]) == pb.PubAck(guid="g1")
    msg = pb.MsgProto.FromString(fake(ctx).to("in.1")[0])
    assert (msg.sequence, msg.subject, msg.data) == (1, "foo", b"hello")
    assert ctx.channels.get("foo").msgs.last_sequence() == 1  # type: ignore[union-attr]
    # delivered before acknowledged
    subjects = [s for s, _ in fake(ctx).sent]
    assert subjects.index("in.1") < subjects.index("ack.reply")


@pytest.mark.parametrize(
    "pm",
    [
        pb.PubMsg(clientID="nobody", guid="g", subject="foo"),  # unknown client
        pb.PubMsg(clientID="c1", connID=b"c1", guid="g", subject="foo.*"),  # wildcard
        pb.PubMsg(clientID="c1", connID=b"c1", subject="foo"),  # no guid
    ],
)
async def test_invalid_publish_gets_error_puback(ctx: ServerContext, pm: pb.PubMsg) -> None:
    await connect(ctx)
    table = dict(protocol_table(ctx, ctx.heartbeats, lambda: False))  # type: ignore[arg-type]
    table["_STAN.pub.test.>"](b"_STAN.pub.test.foo", b"r", pm.SerializeToString())
    assert pb.PubAck.FromString(fake(ctx).to("r")[0]).error == ERR_INVALID_PUB_REQ
    assert ctx.channels.get("foo") is None


# ------------------------------------------------------------ subscribe
async def test_subscribe_errors(ctx: ServerContext) -> None:
    await connect(ctx)
    resp = await handle_subscribe(ctx, sub_req(clientID="nobody"), "r")
    assert resp is not None and resp.error == ERR_UNKNOWN_CLIENT
    resp = await handle_subscribe(ctx, sub_req(ackWaitInSecs=0), "r")
    assert resp is not None and resp.error == ERR_INVALID_ACK_WAIT


async def test_unsubscribe_and_close_responses(ctx: ServerContext) -> None:
    await connect(ctx)
    ack_inbox = (await subscribe(ctx, durableName="d")).ackInbox
    req = pb.UnsubscribeRequest(clientID="c1", subject="foo", inbox=ack_inbox)
    bad = pb.UnsubscribeRequest(clientID="c1", subject="nope", inbox=ack_inbox)
    resp = await handle_unsubscribe(ctx, bad.SerializeToString(), "r")
    assert resp is not None and resp.error == ERR_UNKNOWN_CHANNEL
    wrong = pb.UnsubscribeRequest(clientID="c1", subject="foo", inbox="x")
    resp = await handle_unsubscribe(ctx, wrong.SerializeToString(), "r")
    assert resp is not None and resp.error == ERR_INVALID_SUB
    resp = await handle_subclose(ctx, req.SerializeToString(), "r")
    assert resp == pb.SubscriptionResponse()
    ch = ctx.channels.get("foo")
    assert ch is not None and list(ch.durables.values())[0].is_closed
    resp = await handle_close(ctx, pb.CloseRequest(clientID="c1").SerializeToString(), "r")
    assert resp == pb.CloseResponse() and ctx.clients.get("c1") is None
    resp = await handle_close(ctx, pb.CloseRequest(clientID="c1").SerializeToString(), "r")
    assert resp is not None and resp.error == ERR_UNKNOWN_CLIENT


async def test_subscription_that_cannot_be_stored_is_refused(
    ctx: ServerContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    await connect(ctx)
    ch = ctx.channel("foo")

    async def full() -> None:
        raise StoreError("no space left on device")

    monkeypatch.setattr(ch.subs_store, "flush", full)
    resp = await handle_subscribe(ctx, sub_req(durableName="d"), "r")
    assert resp is not None and resp.error == "no space left on device"
    assert ch.all_subs() == [] and not ch.has_active_subs()
    client = ctx.clients.get("c1")
    assert client is not None and client.subs == []


# ------------------------------------------------------------ pings
async def test_ping_of_a_replaced_connection(ctx: ServerContext) -> None:
    await connect(ctx)
    hb = ctx.heartbeats
    assert isinstance(hb, ClientHeartbeats)
    ok = hb.handle_ping(pb.Ping(connID=b"c1").SerializeToString())
    assert ok == pb.PingResponse()
    gone = hb.handle_ping(pb.Ping(connID=b"other").SerializeToString())
    assert gone is not None and gone.error == ERR_CLIENT_REPLACED
    assert hb.handle_ping(b"\xff") is None


def test_protocol_table_covers_every_request_subject() -> None:
    async def build() -> list[str]:
        opts = StreamingOptions(cluster_id="test")
        store = MemoryStore(StoreLimits())
        info = server_subjects("test", "_STAN.discover")
        c = ServerContext(
            opts, FakeTransport(), store, info, ClientRegistry(), ChannelRegistry(store), None
        )
        return [s for s, _ in protocol_table(c, ClientHeartbeats(c), lambda: False)]

    subjects = asyncio.run(build())
    assert subjects == [
        "_STAN.pub.test.>",
        "_STAN.discover.test",
        "_STAN.discover.test.pings",
        "_STAN.sub.test",
        "_STAN.unsub.test",
        "_STAN.subclose.test",
        "_STAN.close.test",
    ]
