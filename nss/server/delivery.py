"""Handing messages out: delivery, MaxInFlight stalls, acks, and AckWait
redelivery.

All of it runs on the server's ordered I/O path, so none of it awaits: a
delivery is a lookup in the channel's store and a buffered publish.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from nss.hot import send_span
from nss.log import get_logger
from nss.nats.connection import MaxPayloadError
from nss.pb.wire import encode_varint
from nss.server.core.model import Channel, QueueGroup, Subscription

if TYPE_CHECKING:
    from nss.stores.base import MsgStore

_log = get_logger()

# A redelivery is due when its deadline is this close (protocol.md §8.5).
_DUE_SLACK = 0.015
# Pending messages handed over by a departing queue member go out this fast.
_TRANSFER_DELAY = 0.1


def sendable(subject: str) -> bool:
    """Whether the server may publish to this client-chosen subject.

    nats.go refuses an empty subject (the Go server logs the failed send and
    goes on), and whitespace would split the PUB protocol line, making the
    NATS server drop the server's connection."""
    return (
        bool(subject)
        and " " not in subject
        and "\t" not in subject
        and "\r" not in subject
        and "\n" not in subject
    )


def mark_redelivered(data: bytes, count: int) -> bytes:
    """Set MsgProto.redelivered and redeliveryCount on an encoded message.

    Stored messages never carry fields 6 and 7, and a later occurrence of a
    scalar field wins in protobuf, so appending them is a valid encoding and
    avoids a decode/encode round trip."""
    return data + b"\x30\x01\x38" + encode_varint(count)


def _unsent(msgs: MsgStore, last_sent: int) -> tuple[int, int] | None:
    """(first, last) sequences still to send after ``last_sent``; messages
    removed by limits are skipped by starting at the channel's first."""
    last = msgs.last_sequence()
    seq = last_sent + 1
    if seq > last:
        return None
    return max(seq, msgs.first_sequence()), last


class Deliverer:
    """Sends messages to subscriptions; owns the redelivery timers.

    ``publish`` is the server connection's buffered publish; ``schedule``
    puts a redelivery pass on the I/O path when a timer fires."""

    def __init__(
        self,
        publish: Callable[[str, bytes], None],
        schedule: Callable[[Subscription], None],
        loop: asyncio.AbstractEventLoop,
        publish_many: Callable[[str, list[bytes]], None] | None = None,
    ) -> None:
        self._publish = publish
        self._publish_many = publish_many
        self._schedule = schedule
        self._loop = loop
        self.out_msgs = 0
        self.out_bytes = 0
        self.redelivered = 0
        # set by the server: have the I/O path deliver to a sub or group once
        # the current operation is done
        self.deliver_later: Callable[[Subscription | QueueGroup], None] | None = None

    # -------------------------------------------------------------- sending
    def publish_many(self, subject: str, payloads: list[bytes]) -> None:
        """Publish each payload to ``subject``, all or (over the NATS
        payload limit) none (raises MaxPayloadError)."""
        if self._publish_many is not None:
            self._publish_many(subject, payloads)
            return
        for p in payloads:
            self._publish(subject, p)

    def _send(self, sub: Subscription, seq: int, data: bytes, now: float) -> None:
        self._publish(sub.inbox, data)
        self.out_msgs += 1
        self.out_bytes += len(data)
        if seq not in sub.pending:
            sub.channel.subs_store.add_seq_pending(sub.id, seq)
            if seq > sub.last_sent:
                sub.last_sent = seq
            sub.pending[seq] = now + sub.ack_wait
            if sub.timer is None:
                self._arm(sub, sub.ack_wait)
        if len(sub.pending) >= sub.max_inflight:
            sub.stalled = True

    def deliver_sub(self, sub: Subscription) -> None:
        """Send what a plain subscription has not seen yet, up to MaxInFlight."""
        if not sub.initialized or sub.client is None or sub.stalled:
            return
        if sub.group is not None:
            self.deliver_group(sub.group)
            return
        if not sendable(sub.inbox):
            return  # every send would fail: the sub never moves (as in Go)
        msgs = sub.channel.msgs
        span = _unsent(msgs, sub.last_sent)
        if span is None:
            return
        send_span(self, sub, msgs, span[0], span[1])

    def deliver_group(self, group: QueueGroup) -> None:
        if not group.members:
            return
        msgs = group.channel.msgs
        span = _unsent(msgs, group.last_sent)
        if span is None:
            return
        seq, last = span
        now = time.time()
        members = group.members
        while seq <= last:
            # Go stops once every member is stalled, before picking (which
            # would rotate the list)
            for x in members:
                if not x.stalled:
                    break
            else:
                return
            m = group.pick()
            if m is None or not m.initialized or not sendable(m.inbox):
                return
            if m.stalled:
                return
            data = msgs.lookup(seq)
            if data is not None:
                self._send(m, seq, data, now)
            group.last_sent = seq
            seq += 1

    def deliver_channel(self, ch: Channel) -> None:
        for sub in ch.plain:
            if not sub.stalled:
                self.deliver_sub(sub)
        for g in ch.queues.values():
            self.deliver_group(g)

    # -------------------------------------------------------------- acks
    def ack(self, sub: Subscription, seq: int) -> bool:
        """Process an Ack; True when the sub (or its group) can take more."""
        owner: Subscription | None = None
        if seq in sub.pending:
            owner = sub
        elif sub.group is not None:
            for m in sub.group.members:
                if seq in m.pending:
                    owner = m
                    break
        if owner is not None:
            del owner.pending[seq]
            owner.channel.subs_store.ack_seq_pending(owner.id, seq)
            counts = owner.group.redeliveries if owner.group is not None else owner.redeliveries
            counts.pop(seq, None)
            if not owner.pending:
                owner.cancel_timer()
        # Go un-stalls the sub the ack came to, found or not; the member that
        # held the message is un-stalled too
        more = False
        for s in (sub, owner):
            if s is not None and s.stalled and len(s.pending) < s.max_inflight:
                s.stalled = False
                more = True
        return more

    # -------------------------------------------------------------- redelivery
    def _arm(self, sub: Subscription, delay: float) -> None:
        sub.cancel_timer()
        sub.timer = self._loop.call_later(max(delay, 0.0), self._schedule, sub)

    def redeliver_pending_now(self, sub: Subscription) -> None:
        """Resend everything pending (resumed durables, rejoined groups) at once."""
        if not sub.pending or sub.client is None:
            return
        now = time.time()
        msgs = sub.channel.msgs
        for seq in sorted(sub.pending):
            data = msgs.lookup(seq)
            if data is None:
                self._implicit_ack(sub, seq)
                continue
            self._resend(sub, seq, data, now)
        if sub.pending:
            self._arm(sub, sub.ack_wait)
        else:
            sub.cancel_timer()

    def _implicit_ack(self, sub: Subscription, seq: int) -> None:
        """Ack on the server's behalf (message gone from the store, or moved
        to another queue member); like a user ack it un-stalls the sub."""
        sub.pending.pop(seq, None)
        sub.channel.subs_store.ack_seq_pending(sub.id, seq)
        if sub.stalled and len(sub.pending) < sub.max_inflight:
            sub.stalled = False
            if self.deliver_later is not None:
                self.deliver_later(sub.group if sub.group is not None else sub)

    def _resend(self, sub: Subscription, seq: int, data: bytes, now: float) -> bool:
        """Redeliver (forced); False when the message could not be sent."""
        if not sendable(sub.inbox):
            return False
        counts = sub.group.redeliveries if sub.group is not None else sub.redeliveries
        n = counts.get(seq, 0) + 1
        counts[seq] = n
        out = mark_redelivered(data, n)
        try:
            self._publish(sub.inbox, out)
        except MaxPayloadError as e:
            # the flag and count can push a message that fit over the limit;
            # as in Go: log it, leave it pending, go on with the others
            _log.error(
                f"[Client:{sub.client_id}] Failed sending to subid={sub.id}, "
                f"subject={sub.channel.name}, seq={seq}, err={e}"
            )
            return False
        self.out_msgs += 1
        self.out_bytes += len(out)
        self.redelivered += 1
        sub.pending[seq] = now + sub.ack_wait
        if len(sub.pending) >= sub.max_inflight:
            sub.stalled = True
        return True

    def redeliver(self, sub: Subscription) -> None:
        """A redelivery pass: resend every pending message whose AckWait ran out."""
        sub.timer = None
        if not sub.pending or sub.client is None:
            return
        if sub.group is None and sub.failed_hb:
            self._arm(sub, sub.ack_wait)
            return
        now = time.time()
        msgs = sub.channel.msgs
        ack_wait = sub.ack_wait
        # entries recovered without a deadline get message timestamp + AckWait
        for seq, exp in list(sub.pending.items()):
            if exp == 0:
                ts = msgs.timestamp_of(seq)
                sub.pending[seq] = (ts / 1e9 if ts else now) + ack_wait
        due = sorted(
            (exp, seq) for seq, exp in sub.pending.items() if exp <= now + _DUE_SLACK
        )
        group = sub.group
        for _, seq in due:
            if seq not in sub.pending:
                continue
            data = msgs.lookup(seq)
            if data is None:
                self._implicit_ack(sub, seq)
                continue
            target = sub
            if group is not None and len(group.members) > 1:
                best = group.pick()
                if best is not None:
                    target = best
            if not self._resend(target, seq, data, now):
                continue
            if target is not sub:
                # moved only once it went out (Go: implicit ack after the send)
                target.channel.subs_store.add_seq_pending(target.id, seq)
                self._implicit_ack(sub, seq)
                if target.timer is None:
                    self._arm(target, target.ack_wait)
        self.rearm(sub, now)

    def rearm(self, sub: Subscription, now: float | None = None) -> None:
        if not sub.pending:
            sub.cancel_timer()
            return
        if now is None:
            now = time.time()
        nxt = min(sub.pending.values())
        self._arm(sub, nxt - now if nxt > now else sub.ack_wait)

    def transfer_pending(self, leaving: Subscription, group: QueueGroup) -> None:
        """Hand a departing member's unacked messages to the others, due now."""
        if not leaving.pending or not group.members:
            return
        members = group.members
        for i, seq in enumerate(sorted(leaving.pending)):
            m = members[i % len(members)]
            m.pending[seq] = 1.0  # long past: due at the next pass
            m.channel.subs_store.add_seq_pending(m.id, seq)
            if seq > m.last_sent:
                m.last_sent = seq
            if len(m.pending) >= m.max_inflight:
                m.stalled = True
        leaving.pending.clear()
        for m in members:
            if m.pending:
                self._arm(m, _TRANSFER_DELAY)
