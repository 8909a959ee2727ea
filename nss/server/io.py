"""The one ordered I/O path of a server.

Every client request that changes state (publish, ack, connect, subscribe,
unsubscribe, close) and every timer that does (redelivery, heartbeat
expiry, inactivity, age) is queued here and run in arrival order. Publishes
and acks are cheap and accumulate into the publish batch (``batch.py``); the
batch is committed when the queue runs dry, when it reaches
``io_batch_size``, or before any other kind of request, so that a close
never overtakes a publish or an ack that arrived before it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from nss.server.batch import PublishBatch
from nss.server.core.model import QueueGroup, Subscription
from nss.server.monitor.histogram import LatencyHistogram

OP_PUB = 0
OP_ACK = 1
OP_CALL = 2  # a plain function, run in order
OP_ACALL = 3  # a coroutine function, run in order and awaited


class IOPath:
    # slots: nss.hot.DirectBatch reads _open, _wake and refusal per message
    __slots__ = (
        "_batch_size", "_flush", "_log", "_open", "_q", "_sleep", "_stopping", "_task",
        "_wake", "batch", "refusal",
    )  # fmt: skip

    def __init__(
        self,
        batch: PublishBatch,
        batch_size: int,
        sleep_us: int,
        log: Any,
        flush: Callable[[], None] | None = None,
    ) -> None:
        self.batch = batch
        # writes out what a round of the task sent (PubAcks, deliveries,
        # replies) as soon as the round ends: left to the end of the loop
        # turn, it would wait behind the reads that turn handles first,
        # a whole read-and-parse later (behind an fsync, for the FILE store)
        self._flush = flush
        self._batch_size = max(1, batch_size)
        self._sleep = sleep_us / 1e6
        self._log = log
        self._q: deque[tuple[Any, ...]] = deque()
        self._wake: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # set while the store takes no write: what to answer publishes with
        # ("" once it takes writes again)
        self.refusal: Callable[[], str] | None = None
        # while the task is parked on an empty queue: how many more publishes
        # and acks may go straight into the batch (see ``publish``); 0 as
        # soon as anything is queued, so "open" also means "queue empty"
        # (what nss.hot.DirectBatch relies on)
        self._open = 0

    # ---------------------------------------------------------------- queueing
    def _signal(self) -> None:
        w = self._wake
        if w is not None:
            # once woken, later publishes of the same loop turn skip this
            self._wake = None
            if not w.done():
                w.set_result(None)

    def publish(self, pm: tuple[str, str, str, str, bytes, bytes], reply: str) -> None:
        """Queue a decoded PubMsg (clientID, guid, subject, reply, data, connID)."""
        if self.refusal is not None:
            err = self.refusal()
            if err:
                # the store takes no write now (e.g. the database holds a
                # commit): answered at once, not queued behind that commit
                if reply:
                    self.batch.refuse(pm[1], reply, err)
                return
        if self._open:
            # the I/O task is parked: nothing is ahead of this publish, so it
            # goes straight into the batch the task commits when it wakes
            self._open -= 1
            self.batch.add_publish(pm[2], pm[1], pm[3], pm[4], reply)
        else:
            self._open = 0
            self._q.append((OP_PUB, pm, reply))
        if self._wake is not None:
            self._signal()

    def ack(self, sub: Subscription, seq: int) -> None:
        if self._open:
            self._open -= 1
            self.batch.add_ack(sub, seq)
        else:
            self._open = 0
            self._q.append((OP_ACK, sub, seq))
        if self._wake is not None:
            self._signal()

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        self._open = 0
        self._q.append((OP_CALL, fn, args))
        self._signal()

    def acall(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        self._open = 0
        self._q.append((OP_ACALL, fn, args))
        self._signal()

    def deliver_later(self, target: Subscription | QueueGroup) -> None:
        """Deliver to this sub or group when the current batch commits."""
        self.batch.deliver_later(target)

    async def commit(self) -> None:
        await self.batch.commit()

    # read by /metrics
    @property
    def flush_latency(self) -> LatencyHistogram:
        return self.batch.flush_latency

    @property
    def batches(self) -> int:
        return self.batch.batches

    @property
    def batched_msgs(self) -> int:
        return self.batch.batched_msgs

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
        while True:
            if not q:
                if self._stopping:
                    return
                self._wake = loop.create_future()
                self._open = self._batch_size
                try:
                    await self._wake
                finally:
                    self._open = 0
                self._wake = None
                if self._sleep and len(q) < self._batch_size:
                    await asyncio.sleep(self._sleep)
            try:
                await self._process()
            except Exception:  # a bug must not stop the server's I/O
                self._log.exception("I/O path error")
                self.batch.reset()
            if self._flush is not None:
                self._flush()

    async def _process(self) -> None:
        q = self._q
        n = 0
        limit = self._batch_size
        batch = self.batch
        add_publish = batch.add_publish
        add_ack = batch.add_ack
        while q and n < limit:
            op = q.popleft()
            kind = op[0]
            if kind == OP_PUB:
                pm = op[1]
                add_publish(pm[2], pm[1], pm[3], pm[4], op[2])
                n += 1
            elif kind == OP_ACK:
                add_ack(op[1], op[2])
                n += 1
            else:
                await batch.commit()
                if kind == OP_CALL:
                    op[1](*op[2])
                else:
                    await op[1](*op[2])
                await batch.commit()
        await batch.commit()
