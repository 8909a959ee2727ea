"""A small STAN client for the tests, written on nats-py.

It speaks the client protocol from the reference directly (no shortcuts into
the server), so the tests exercise nss over the wire exactly as stan.go or
stan.py would, and it can also send malformed requests on purpose.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from nss.pb import protocol_pb2 as pb


class StanError(Exception):
    pass


def new_guid() -> str:
    return uuid.uuid4().hex


@dataclass
class Sub:
    client: StanClient
    channel: str
    inbox: str
    ack_inbox: str
    manual_acks: bool
    nats_sub: Any
    queue: asyncio.Queue[pb.MsgProto] = field(default_factory=asyncio.Queue)
    received: list[pb.MsgProto] = field(default_factory=list)

    async def next(self, timeout: float = 5.0) -> pb.MsgProto:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def take(self, n: int, timeout: float = 5.0) -> list[pb.MsgProto]:
        return [await self.next(timeout) for _ in range(n)]

    async def expect_nothing(self, within: float = 0.3) -> None:
        """Assert that no message arrives within ``within`` seconds."""
        try:
            m = await asyncio.wait_for(self.queue.get(), within)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected message seq={m.sequence} redelivered={m.redelivered}")

    async def ack(self, msg: pb.MsgProto) -> None:
        await self.client.nc.publish(
            self.ack_inbox, pb.Ack(subject=self.channel, sequence=msg.sequence).SerializeToString()
        )

    async def unsubscribe(self) -> None:
        await self._remove(self.client.resp.unsubRequests)

    async def close(self) -> None:
        await self._remove(self.client.resp.subCloseRequests)

    async def _remove(self, subject: str) -> None:
        req = pb.UnsubscribeRequest(
            clientID=self.client.client_id, subject=self.channel, inbox=self.ack_inbox
        )
        r = await self.client.nc.request(subject, req.SerializeToString(), timeout=2)
        resp = pb.SubscriptionResponse.FromString(r.data)
        await self.nats_sub.unsubscribe()
        if resp.error:
            raise StanError(resp.error)


class StanClient:
    def __init__(self, nc: NATS, cluster_id: str, client_id: str) -> None:
        self.nc = nc
        self.cluster_id = cluster_id
        self.client_id = client_id
        self.conn_id = new_guid().encode()
        self.resp = pb.ConnectResponse()
        self.hb_inbox = nc.new_inbox()
        self.ack_subject = "_STAN.acks." + new_guid()
        self.answer_heartbeats = True
        self.heartbeats = 0
        self._acks: dict[str, asyncio.Future[str]] = {}

    @classmethod
    async def connect(
        cls,
        url: str,
        client_id: str,
        cluster_id: str = "test-cluster",
        *,
        nc: NATS | None = None,
        protocol: int = 1,
        ping_interval: int = 5,
        ping_max_out: int = 3,
        timeout: float = 2.0,
    ) -> StanClient:
        own = nc is None
        if nc is None:
            nc = await nats.connect(url, allow_reconnect=False)
        c = cls(nc, cluster_id, client_id)
        try:
            await c._connect(protocol, ping_interval, ping_max_out, timeout)
        except BaseException:
            if own:
                await nc.close()
            raise
        return c

    async def _connect(self, protocol: int, ping_interval: int, ping_max_out: int, timeout: float):
        async def on_hb(msg: Msg) -> None:
            self.heartbeats += 1
            if self.answer_heartbeats and msg.reply:
                await self.nc.publish(msg.reply, b"")

        await self.nc.subscribe(self.hb_inbox, cb=on_hb)
        req = pb.ConnectRequest(
            clientID=self.client_id,
            heartbeatInbox=self.hb_inbox,
            protocol=protocol,
            connID=self.conn_id,
            pingInterval=ping_interval,
            pingMaxOut=ping_max_out,
        )
        try:
            r = await self.nc.request(
                f"_STAN.discover.{self.cluster_id}", req.SerializeToString(), timeout=timeout
            )
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as e:
            raise StanError("stan: connect request timeout") from e
        resp = pb.ConnectResponse.FromString(r.data)
        if resp.error:
            raise StanError(resp.error)
        self.resp = resp
        await self.nc.subscribe(self.ack_subject, cb=self._on_puback)

    async def _on_puback(self, msg: Msg) -> None:
        ack = pb.PubAck.FromString(msg.data)
        fut = self._acks.pop(ack.guid, None)
        if fut is not None and not fut.done():
            fut.set_result(ack.error)

    def publish_async(self, channel: str, data: bytes) -> asyncio.Future[str]:
        """Send a PubMsg; the future resolves to the PubAck's error ('' = ok)."""
        guid = new_guid()
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._acks[guid] = fut
        pm = pb.PubMsg(
            clientID=self.client_id, guid=guid, subject=channel, data=data, connID=self.conn_id
        )
        asyncio.ensure_future(
            self.nc.publish(
                f"{self.resp.pubPrefix}.{channel}", pm.SerializeToString(), reply=self.ack_subject
            )
        )
        return fut

    async def publish(self, channel: str, data: bytes, timeout: float = 5.0) -> None:
        err = await asyncio.wait_for(self.publish_async(channel, data), timeout)
        if err:
            raise StanError(err)

    async def subscribe(
        self,
        channel: str,
        *,
        queue: str = "",
        durable: str = "",
        start: int = pb.NewOnly,
        start_sequence: int = 0,
        start_time_delta_ns: int = 0,
        max_inflight: int = 1024,
        ack_wait: int = 30,
        manual_acks: bool = False,
        on_msg: Callable[[pb.MsgProto], None] | None = None,
    ) -> Sub:
        inbox = self.nc.new_inbox()
        holder: dict[str, Sub] = {}
        ready = asyncio.Event()

        async def on_data(msg: Msg) -> None:
            m = pb.MsgProto.FromString(msg.data)
            # nats-py may run this before the request() awaiting the
            # SubscriptionResponse resumes, although the response came first
            await ready.wait()
            sub = holder["sub"]
            sub.received.append(m)
            if on_msg is not None:
                on_msg(m)
            await sub.queue.put(m)
            if not sub.manual_acks:
                await sub.ack(m)

        nsub = await self.nc.subscribe(inbox, cb=on_data)
        req = pb.SubscriptionRequest(
            clientID=self.client_id,
            subject=channel,
            qGroup=queue,
            inbox=inbox,
            maxInFlight=max_inflight,
            ackWaitInSecs=ack_wait,
            durableName=durable,
            startPosition=start,
            startSequence=start_sequence,
            startTimeDelta=start_time_delta_ns,
        )
        r = await self.nc.request(self.resp.subRequests, req.SerializeToString(), timeout=2)
        resp = pb.SubscriptionResponse.FromString(r.data)
        if resp.error:
            await nsub.unsubscribe()
            raise StanError(resp.error)
        sub = Sub(self, channel, inbox, resp.ackInbox, manual_acks, nsub)
        holder["sub"] = sub
        ready.set()
        return sub

    async def ping(self, conn_id: bytes | None = None) -> str:
        """One PING; returns the PingResponse error ('' = ok)."""
        ping = pb.Ping(connID=self.conn_id if conn_id is None else conn_id)
        r = await self.nc.request(self.resp.pingRequests, ping.SerializeToString(), timeout=2)
        return pb.PingResponse.FromString(r.data).error

    async def close(self) -> None:
        try:
            req = pb.CloseRequest(clientID=self.client_id)
            r = await self.nc.request(self.resp.closeRequests, req.SerializeToString(), timeout=2)
            resp = pb.CloseResponse.FromString(r.data)
            if resp.error:
                raise StanError(resp.error)
        finally:
            await self.nc.close()

    async def drop(self) -> None:
        """Vanish without a CloseRequest, like a crashed process."""
        await self.nc.close()


async def wait_for(cond: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> Any:
    """Poll ``cond`` until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(interval)
