"""The publish batch: the per-message work of the server in one small unit.

Publishes and acks accumulate here; ``commit`` makes them durable (each
touched store flushed once), delivers, and only then sends the PubAcks.
Success and failure are decided channel by channel: a channel whose store
fails is rolled back to where the batch found it and its publishers get
error PubAcks, so an error PubAck always means "not stored".

Its inputs and outputs are plain values (subjects, guids, payload bytes,
sequence numbers) plus the channel objects it appends to, and it reaches
nothing of the server but what it is handed: the channel lookup, the
deliverer, the send function and the after-publish hook. This is the unit a
compiled hot path replaces.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable
from typing import Any, Protocol

from nss.hot import encode_msgproto, encode_puback
from nss.server.core.model import Channel, QueueGroup, Subscription
from nss.server.monitor.histogram import LatencyHistogram
from nss.stores.base import StoreError

ERR_MAX_PAYLOAD = "nats: maximum payload exceeded"

__all__ = ["ERR_MAX_PAYLOAD", "PublishBatch", "encode_puback"]

class _ChannelPart:
    """One channel's part of a batch: its messages, and what to return to if
    it fails.

    The messages (sequences ``next_seq`` on, their timestamps in ``tss``,
    encoded in ``datas``) go to the store together when the batch commits
    (``MsgStore.store_many``). A failure (that store or the ``flush``
    raising) rolls the channel's message store back to its mark and answers
    every publish of the part with the error, since none of them is
    stored."""

    __slots__ = ("next_seq", "last_ts", "count", "error", "tss", "datas")

    def __init__(self, ch: Channel) -> None:
        self.next_seq = ch.next_seq
        self.last_ts = ch.last_ts
        self.count = 0
        self.error = ""
        # array('q'): the compiled batch appends C integers, MEMORY copies
        # them whole, FILE frames them, with no int object per message
        self.tss = array("q")
        self.datas: list[bytes] = []


class Delivery(Protocol):
    """The deliverer as a batch uses it."""

    def ack(self, sub: Subscription, seq: int) -> bool: ...

    def deliver_channel(self, ch: Channel) -> None: ...

    def deliver_sub(self, sub: Subscription) -> None: ...

    def deliver_group(self, group: QueueGroup) -> None: ...


class PublishBatch:
    # slots: nss.hot.DirectBatch reads the batch's dicts per message
    __slots__ = (
        "_acked", "_after_publish", "_channel", "_deliverer", "_log", "_parts", "_pubacks",
        "_send", "_subjects", "_to_deliver", "batched_msgs", "batches", "flush_latency",
        "max_payload", "send_pubacks",
    )  # fmt: skip

    def __init__(
        self,
        channel_for_publish: Callable[[str], Channel],
        deliverer: Delivery,
        send: Callable[[str, bytes], None],
        after_publish: Callable[[Channel], None],
        max_payload: int,
        log: Any,
    ) -> None:
        # raises StoreError or ValueError (limits, name case conflict, ...)
        self._channel = channel_for_publish
        self._deliverer = deliverer
        self._send = send
        self._after_publish = after_publish
        self.max_payload = max_payload
        self._log = log
        self._parts: dict[Channel, _ChannelPart] = {}
        # the channels of this batch's parts by name: a publish to one of
        # them needs no channel lookup (none is deleted within a batch)
        self._subjects: dict[str, tuple[Channel, _ChannelPart]] = {}
        # (reply, guid, part or None, error): the part decides at commit
        self._pubacks: list[tuple[str, str, _ChannelPart | None, str]] = []
        self._to_deliver: dict[Subscription | QueueGroup, None] = {}
        self._acked: dict[Channel, None] = {}
        # the connection's bulk PubAck sender, when it has one: every PubAck
        # of a commit framed in one call, ``(reply, guid, part, error)`` each
        self.send_pubacks: Callable[[list[tuple[str, str, Any, str]]], None] | None = None
        self.batches = 0
        self.batched_msgs = 0
        # store flush latency, read by /metrics (nss_store_flush_seconds)
        self.flush_latency = LatencyHistogram()

    def refuse(self, guid: str, reply: str, error: str) -> None:
        """An error PubAck at once, for a publish never queued."""
        self._send(reply, encode_puback(guid, error))

    def add_publish(self, subject: str, guid: str, msg_reply: str, data: bytes, reply: str) -> None:
        """Assign the next sequence of ``subject`` and append the message."""
        known = self._subjects.get(subject)
        if known is not None:
            ch, part = known
        else:
            try:
                ch = self._channel(subject)
            except (StoreError, ValueError) as e:
                if reply:
                    self._pubacks.append((reply, guid, None, str(e)))
                return
            part = self._parts.get(ch)
        seq = ch.next_seq
        ts = time.time_ns()
        if ts < ch.last_ts:
            ts = ch.last_ts
        encoded = encode_msgproto(seq, subject, msg_reply, data, ts)
        if len(encoded) > self.max_payload:
            if reply:
                self._pubacks.append((reply, guid, None, ERR_MAX_PAYLOAD))
            return
        if part is None:
            part = self._parts[ch] = _ChannelPart(ch)
            self._subjects[subject] = (ch, part)
            ch.msgs.mark()
        part.count += 1
        if reply:
            self._pubacks.append((reply, guid, part, ""))
        part.tss.append(ts)
        part.datas.append(encoded)
        ch.next_seq = seq + 1
        ch.last_ts = ts

    @staticmethod
    def _store(ch: Channel, part: _ChannelPart) -> None:
        if part.datas:
            tss, datas = part.tss, part.datas
            part.tss, part.datas = array("q"), []
            ch.msgs.store_many(part.next_seq, tss, datas)

    def _fail(self, ch: Channel, part: _ChannelPart, error: str) -> None:
        """Roll the channel back to where the batch found it (logged by
        ``commit``, once the part is complete)."""
        part.error = error
        ch.msgs.rollback()
        ch.next_seq = part.next_seq
        ch.last_ts = part.last_ts

    def add_ack(self, sub: Subscription, seq: int) -> None:
        if self._deliverer.ack(sub, seq):
            self._to_deliver[sub.group if sub.group is not None else sub] = None
        # the ack record must reach the disk even when nothing else moves
        self._acked[sub.channel] = None

    def deliver_later(self, target: Subscription | QueueGroup) -> None:
        """Deliver to this sub or group when the batch commits."""
        self._to_deliver[target] = None

    def reset(self) -> None:
        """After a bug (not a store failure): keep what was stored, as
        before marks existed, and store what was not yet (no PubAck goes
        out for it, so the publishers send it again: at least once)."""
        for ch, part in self._parts.items():
            if part.error:
                continue
            try:
                self._store(ch, part)
            except StoreError as e:
                self._fail(ch, part, str(e))  # the sequences are used again
                self._log.error(
                    f'Unable to store messages on channel "{ch.name}" '
                    f"after an I/O path error: {e}"
                )
                continue
            ch.msgs.release()
        self._parts.clear()
        self._subjects.clear()
        self._pubacks.clear()
        self._to_deliver.clear()
        self._acked.clear()

    async def commit(self) -> None:
        """Flush what the batch stored, deliver it, then acknowledge it.

        Channel by channel: a channel whose flush fails (disk full, database
        away) is rolled back and its publishers get error PubAcks; the other
        channels of the batch are delivered and acknowledged. Subscription
        records that cannot be written are logged and kept for the next
        flush: the messages are stored all the same."""
        parts = self._parts
        to_deliver = self._to_deliver
        pubacks = self._pubacks
        acked = self._acked
        if not parts and not to_deliver and not pubacks and not acked:
            return
        self.batches += 1
        self.batched_msgs += len(pubacks)
        deliverer = self._deliverer
        chans: list[Channel] = []
        if parts:
            self._parts = {}
            self._subjects = {}
            for ch, part in parts.items():
                try:
                    self._store(ch, part)
                except StoreError as e:
                    self._fail(ch, part, str(e))
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
                    self._log.error(
                        f'Unable to store messages on channel "{ch.name}" '
                        f"({part.count} message(s) not stored): {part.error}"
                    )
                    continue
                ch.msgs.release()
                chans.append(ch)
                self._deliver(deliverer.deliver_channel, ch)
                self._after_publish(ch)
        if to_deliver:
            targets = list(to_deliver)
            to_deliver.clear()
            for t in targets:
                if isinstance(t, QueueGroup):
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
                self._log.error(f'Unable to store subscription state of channel "{ch.name}": {e}')
        if pubacks:
            self._pubacks = []
            if self.send_pubacks is not None:
                self.send_pubacks(pubacks)
                return
            send = self._send
            for reply, guid, part, error in pubacks:
                if not error and part is not None:
                    error = part.error
                send(reply, encode_puback(guid, error))

    def _deliver(self, fn: Callable[[Any], None], target: Any) -> None:
        """A store read failing (database away) stops this delivery only; it
        resumes with the next batch or ack that touches the subscription."""
        try:
            fn(target)
        except StoreError as e:
            self._log.error(f"Unable to deliver on {target.channel.name}: {e}")
