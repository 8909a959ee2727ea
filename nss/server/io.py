"""The one ordered I/O path of a server.

Every client request that changes state (publish, ack, connect, subscribe,
unsubscribe, close) and every timer that does (redelivery, heartbeat
expiry, inactivity, age) is queued here and run in arrival order. Publishes
and acks are cheap and accumulate into a batch; the batch is committed
(stores flushed once per touched channel, then delivery, then PubAcks) when
the queue runs dry, when it reaches ``io_batch_size``, or before any other
kind of request, so that a close never overtakes a publish or an ack that
arrived before it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from nss.pb import protocol_pb2 as pb
from nss.server.monitor import LatencyHistogram
from nss.stores.base import StoreError

if TYPE_CHECKING:
    from nss.server.channels import Channel
    from nss.server.server import StanServer
    from nss.server.subs import QueueGroup, Subscription

OP_PUB = 0
OP_ACK = 1
OP_CALL = 2  # a plain function, run in order
OP_ACALL = 3  # a coroutine function, run in order and awaited

_MsgProto = pb.MsgProto


class _ChannelBatch:
    """One channel's part of a batch: what to return to if it fails.

    A failure (a ``store`` or the ``flush`` raising) rolls the channel's
    message store back to its mark and answers every publish of the part
    with the error, since none of them is stored; later publishes to the
    channel in the same batch get the same error without another try."""

    __slots__ = ("next_seq", "last_ts", "count", "error")

    def __init__(self, ch: Channel) -> None:
        self.next_seq = ch.next_seq
        self.last_ts = ch.last_ts
        self.count = 0
        self.error = ""


def encode_puback(guid: str, error: str = "") -> bytes:
    if error:
        return pb.PubAck(guid=guid, error=error).SerializeToString()
    g = guid.encode()
    n = len(g)
    if n < 0x80:
        return b"\x0a" + bytes((n,)) + g
    return pb.PubAck(guid=guid).SerializeToString()


class IOPath:
    def __init__(self, server: StanServer, batch_size: int, sleep_us: int) -> None:
        self._server = server
        self._batch_size = max(1, batch_size)
        self._sleep = sleep_us / 1e6
        self._q: deque[tuple[Any, ...]] = deque()
        self._wake: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # the batch being built
        self._parts: dict[Channel, _ChannelBatch] = {}
        # (reply, guid, part or None, error): the part decides at commit
        self._pubacks: list[tuple[str, str, _ChannelBatch | None, str]] = []
        self._to_deliver: dict[Subscription | QueueGroup, None] = {}
        self._acked: dict[Channel, None] = {}
        self.batches = 0
        self.batched_msgs = 0
        # store flush latency, read by /metrics (nss_store_flush_seconds)
        self.flush_latency = LatencyHistogram()

    # ---------------------------------------------------------------- queueing
    def _signal(self) -> None:
        w = self._wake
        if w is not None and not w.done():
            w.set_result(None)

    def publish(self, pm: pb.PubMsg, reply: str) -> None:
        self._q.append((OP_PUB, pm, reply))
        self._signal()

    def ack(self, sub: Subscription, seq: int) -> None:
        self._q.append((OP_ACK, sub, seq))
        self._signal()

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        self._q.append((OP_CALL, fn, args))
        self._signal()

    def acall(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        self._q.append((OP_ACALL, fn, args))
        self._signal()

    def deliver_later(self, target: Subscription | QueueGroup) -> None:
        """Deliver to this sub or group when the current batch commits."""
        self._to_deliver[target] = None

    # ---------------------------------------------------------------- running
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def abort(self) -> None:
        """Stop at once, dropping what is queued (the store is fenced)."""
        self._q.clear()
        if self._task is not None:
            self._task.cancel()

    async def drain_and_stop(self) -> None:
        """Finish everything queued so far, then stop."""
        self._stopping = True
        self._signal()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 10.0)
            except TimeoutError:
                self._task.cancel()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        q = self._q
        log = self._server.log
        while True:
            if not q:
                if self._stopping:
                    return
                self._wake = loop.create_future()
                await self._wake
                self._wake = None
                if self._sleep and len(q) < self._batch_size:
                    await asyncio.sleep(self._sleep)
            try:
                await self._process()
            except Exception:  # a bug must not stop the server's I/O
                log.exception("I/O path error")
                self._reset_batch()

    def _reset_batch(self) -> None:
        # a bug, not a store failure: keep what was stored, as before marks
        for ch, part in self._parts.items():
            if not part.error:
                ch.msgs.release()
        self._parts.clear()
        self._pubacks.clear()
        self._to_deliver.clear()
        self._acked.clear()

    async def _process(self) -> None:
        q = self._q
        n = 0
        limit = self._batch_size
        store_pub = self._store_pub
        server = self._server
        deliverer = server.deliverer
        while q and n < limit:
            op = q.popleft()
            kind = op[0]
            if kind == OP_PUB:
                store_pub(op[1], op[2])
                n += 1
            elif kind == OP_ACK:
                sub = op[1]
                if deliverer.ack(sub, op[2]):
                    self._to_deliver[sub.group if sub.group is not None else sub] = None
                # the ack record must reach the disk even when nothing else moves
                self._acked[sub.channel] = None
                n += 1
            else:
                await self.commit()
                if kind == OP_CALL:
                    op[1](*op[2])
                else:
                    await op[1](*op[2])
                await self.commit()
        await self.commit()

    def _store_pub(self, pm: pb.PubMsg, reply: str) -> None:
        server = self._server
        name = pm.subject
        ch = server.channels.channels.get(name)
        if ch is None or ch.deleting:
            try:
                ch = server.lookup_or_create_channel(name)
            except (StoreError, ValueError) as e:
                if reply:
                    self._pubacks.append((reply, pm.guid, None, str(e)))
                return
        part = self._parts.get(ch)
        if part is not None and part.error:
            part.count += 1
            if reply:
                self._pubacks.append((reply, pm.guid, part, ""))
            return
        seq = ch.next_seq
        ts = time.time_ns()
        if ts < ch.last_ts:
            ts = ch.last_ts
        data = _MsgProto(
            sequence=seq, subject=name, reply=pm.reply, data=pm.data, timestamp=ts
        ).SerializeToString()
        if len(data) > server.max_payload:
            if reply:
                self._pubacks.append((reply, pm.guid, None, "nats: maximum payload exceeded"))
            return
        if part is None:
            part = self._parts[ch] = _ChannelBatch(ch)
            ch.msgs.mark()
        part.count += 1
        if reply:
            self._pubacks.append((reply, pm.guid, part, ""))
        try:
            ch.msgs.store(seq, ts, data)
        except StoreError as e:
            self._fail(ch, part, str(e))
            return
        ch.next_seq = seq + 1
        ch.last_ts = ts

    def _fail(self, ch: Channel, part: _ChannelBatch, error: str) -> None:
        """Roll the channel back to where the batch found it (logged by
        ``commit``, once the part is complete)."""
        part.error = error
        ch.msgs.rollback()
        ch.next_seq = part.next_seq
        ch.last_ts = part.last_ts

    async def commit(self) -> None:
        """Flush what the batch stored, deliver it, then acknowledge it.

        Channel by channel: a channel whose flush fails (disk full, database
        away) is rolled back and its publishers get error PubAcks, so an
        error always means "not stored"; the other channels of the batch
        are delivered and acknowledged. Subscription records that cannot be
        written are logged and kept for the next flush: the messages are
        stored all the same."""
        parts = self._parts
        to_deliver = self._to_deliver
        pubacks = self._pubacks
        acked = self._acked
        if not parts and not to_deliver and not pubacks and not acked:
            return
        server = self._server
        self.batches += 1
        self.batched_msgs += len(pubacks)
        deliverer = server.deliverer
        chans: list[Channel] = []
        if parts:
            self._parts = {}
            t0 = time.perf_counter()
            for ch, part in parts.items():
                if part.error:
                    continue
                try:
                    await ch.msgs.flush()
                except StoreError as e:
                    self._fail(ch, part, str(e))
            self.flush_latency.observe(time.perf_counter() - t0)
            for ch, part in parts.items():
                if part.error:
                    server.log.error(
                        f'Unable to store messages on channel "{ch.name}" '
                        f"({part.count} message(s) not stored): {part.error}"
                    )
                    continue
                ch.msgs.release()
                chans.append(ch)
                self._deliver(deliverer.deliver_channel, ch)
                server.after_publish(ch)
        if to_deliver:
            targets = list(to_deliver)
            to_deliver.clear()
            for t in targets:
                if hasattr(t, "members"):
                    self._deliver(deliverer.deliver_group, t)
                else:
                    self._deliver(deliverer.deliver_sub, t)
                chans.append(t.channel)
        if acked:
            chans.extend(acked)
            acked.clear()
        for ch in dict.fromkeys(chans):
            try:
                await ch.subs_store.flush()
            except StoreError as e:
                server.log.error(f'Unable to store subscription state of channel "{ch.name}": {e}')
        if pubacks:
            self._pubacks = []
            publish = server.conn.publish
            for reply, guid, part, error in pubacks:
                if not error and part is not None:
                    error = part.error
                publish(reply, encode_puback(guid, error))

    def _deliver(self, fn: Callable[[Any], None], target: Any) -> None:
        """A store read failing (database away) stops this delivery only; it
        resumes with the next batch or ack that touches the subscription."""
        try:
            fn(target)
        except StoreError as e:
            self._server.log.error(f"Unable to deliver on {target.channel.name}: {e}")

