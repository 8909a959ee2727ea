"""The subscription lifecycle (protocol.md §7, §9), with no NATS access.

What a subscribe request makes of a channel's state (a new plain, durable
or queue subscription, a resumed durable, a queue group rejoined through
its shadow) and what taking a subscription off line leaves behind (gone,
an offline durable, or a durable queue group's shadow). The protocol
handlers add the transport around it: the ack inbox, the reply, delivery.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from nss.pb import protocol_pb2 as pb
from nss.server.core.model import Channel, Client, QueueGroup, Subscription
from nss.stores.base import MsgStore

ERR_DUP_DURABLE = "stan: duplicate durable registration"
ERR_DURABLE_QUEUE_COLON = (
    "stan: durable name of a durable queue subscriber can't contain the character ':'"
)

def start_position(
    msgs: MsgStore, position: int, start_seq: int, start_delta_ns: int, now_ns: int
) -> int:
    """The initial lastSent of a new subscription (protocol.md §7.1)."""
    first, last = msgs.first_sequence(), msgs.last_sequence()
    if position == pb.NewOnly:
        return last
    if position == pb.LastReceived:
        return last - 1 if last > 0 else 0
    if position == pb.TimeDeltaStart:
        seq = msgs.get_sequence_from_timestamp(now_ns - start_delta_ns)
        return seq - 1 if seq > 0 else 0
    if position == pb.SequenceStart:
        if start_seq < first:
            return first - 1
        if start_seq > last:
            return last
        return start_seq - 1 if start_seq > 0 else 0
    return first - 1 if first > 0 else 0  # First


def _request_start(ch: Channel, req: pb.SubscriptionRequest, now_ns: int | None) -> int:
    return start_position(
        ch.msgs,
        int(req.startPosition),
        req.startSequence,
        req.startTimeDelta,
        time.time_ns() if now_ns is None else now_ns,
    )


def fill(sub: Subscription, client: Client, req: pb.SubscriptionRequest, ack_inbox: str) -> None:
    """Bind a subscription to the client and the options of its request."""
    sub.client_id = client.id
    sub.client = client
    sub.inbox = req.inbox
    sub.ack_inbox = ack_inbox
    sub.max_inflight = req.maxInFlight
    sub.ack_wait = req.ackWaitInSecs
    sub.stalled = len(sub.pending) >= sub.max_inflight
    sub.failed_hb = client.failed_hb > 0


@dataclass
class Removal:
    """What taking a subscription off line leaves for the transport to do.

    ``ack_sid``: the ack inbox subscription to drop. ``heir``: the queue group
    that takes over the leaving member's unacknowledged messages.
    ``channel_idle``: the channel has no active subscription left (the
    inactivity timer starts)."""

    ack_sid: int
    heir: QueueGroup | None
    channel_idle: bool


@dataclass
class Created:
    """The outcome of a subscribe request.

    ``resumed``: an existing record came back on line (its pending messages
    are redelivered at once). ``replaced``: what taking off line the online
    durable that ``replace_durable`` displaced left to do."""

    sub: Subscription
    resumed: bool
    replaced: Removal | None = None


def create_or_resume(
    ch: Channel,
    client: Client,
    req: pb.SubscriptionRequest,
    ack_inbox: str,
    replace_durable: bool = False,
    now_ns: int | None = None,
) -> Created:
    """Create, or bring back on line, the subscription a request asks for.

    ``now_ns``: the time a start position by time is counted from (the
    present, unless a request is replayed: nss-migrate's Raft import).

    Raises ValueError with the client-facing error, or StoreError (limits,
    store failure); nothing is changed then."""
    store = ch.subs_store
    if req.qGroup:
        # checked after the channel was created, as Go does (processSub)
        if req.durableName and ":" in req.durableName:
            raise ValueError(ERR_DURABLE_QUEUE_COLON)
        return _join_queue(ch, client, req, ack_inbox, now_ns)
    if req.durableName:
        key = f"{client.id}-{ch.name}-{req.durableName}"
        existing = ch.durables.get(key)
        replaced = None
        if existing is not None and existing.client is not None:
            if not replace_durable:
                raise ValueError(ERR_DUP_DURABLE)
            replaced = take_offline(existing, unsubscribe=False)
        if existing is not None:
            fill(existing, client, req, ack_inbox)
            existing.is_closed = False
            store.update_sub(existing.to_state())
            return Created(existing, True, replaced)
        sub = Subscription(ch)
        fill(sub, client, req, ack_inbox)
        sub.durable_name = req.durableName
        sub.is_durable = True
        sub.last_sent = _request_start(ch, req, now_ns)
        _persist_new(sub)
        ch.durables[key] = sub
        return Created(sub, False)
    sub = Subscription(ch)
    fill(sub, client, req, ack_inbox)
    sub.last_sent = _request_start(ch, req, now_ns)
    _persist_new(sub)
    return Created(sub, False)


def _join_queue(
    ch: Channel,
    client: Client,
    req: pb.SubscriptionRequest,
    ack_inbox: str,
    now_ns: int | None,
) -> Created:
    gname = f"{req.durableName}:{req.qGroup}" if req.durableName else req.qGroup
    group = ch.queues.get(gname)
    if group is not None and group.shadow is not None and not group.members:
        sub = group.shadow
        fill(sub, client, req, ack_inbox)
        sub.last_sent = max(sub.last_sent, group.last_sent)
        ch.subs_store.update_sub(sub.to_state())
        group.shadow = None
        group.members.append(sub)
        sub.group = group
        return Created(sub, True)
    sub = Subscription(ch)
    fill(sub, client, req, ack_inbox)
    sub.qgroup = gname
    sub.is_durable = bool(req.durableName)
    # A member joining a group starts with its own lastSent at 0, as in Go
    # (monitoring reports it); the group's position drives delivery.
    sub.last_sent = 0 if group is not None else _request_start(ch, req, now_ns)
    _persist_new(sub)
    if group is None:
        group = QueueGroup(gname, ch, bool(req.durableName))
        group.last_sent = sub.last_sent
        ch.queues[gname] = group
    group.members.append(sub)
    sub.group = group
    return Created(sub, False)


def _persist_new(sub: Subscription) -> None:
    state = sub.to_state()
    sub.channel.subs_store.create_sub(state)
    sub.id = state.ID


def attach(sub: Subscription, client: Client) -> None:
    """Index a subscription that is on line: by its client, its channel's
    plain list (queue members are listed by their group) and ack inbox."""
    client.subs.append(sub)
    if sub.group is None:
        sub.channel.plain.append(sub)
    sub.channel.by_ack[sub.ack_inbox] = sub


def take_offline(sub: Subscription, unsubscribe: bool) -> Removal:
    """Take a subscription off line: gone, or kept as an offline durable or
    a durable queue group's shadow (protocol.md §9).

    ``unsubscribe``: the client unsubscribed (a durable is forgotten)
    rather than closed the subscription or went away (a durable stays)."""
    ch = sub.channel
    store = ch.subs_store
    sub.cancel_timer()
    ack_sid, sub.ack_sid = sub.ack_sid, 0
    ch.by_ack.pop(sub.ack_inbox, None)
    client = sub.client
    if client is not None and sub in client.subs:
        client.subs.remove(sub)
    sub.client = None
    sub.initialized = False
    heir = None
    group = sub.group
    if group is not None:
        if sub in group.members:
            group.members.remove(sub)
        group.last_sent = max(group.last_sent, sub.last_sent)
        if group.members:
            store.delete_sub(sub.id)
            heir = group
            _keep_group_position(sub, group)
        elif group.durable and not unsubscribe:
            # the shadow keeps its stalled flag: monitoring reports it (Go)
            sub.saved_client_id = sub.client_id
            sub.client_id = ""
            sub.last_sent = group.last_sent
            store.update_sub(sub.to_state())
            group.shadow = sub
        else:
            store.delete_sub(sub.id)
            ch.queues.pop(group.name, None)
    else:
        if sub in ch.plain:
            ch.plain.remove(sub)
        if sub.is_durable and not unsubscribe:
            # an offline durable keeps its stalled flag: monitoring reports
            # it (Go); it is worked out again when the durable resumes
            sub.is_closed = True
            store.update_sub(sub.to_state())
        else:
            store.delete_sub(sub.id)
            if sub.is_durable:
                key = sub.durable_key
                if ch.durables.get(key) is sub:
                    del ch.durables[key]
    return Removal(ack_sid, heir, not ch.has_active_subs())


def _keep_group_position(leaving: Subscription, group: QueueGroup) -> None:
    """A member that leaves a group holding the group's last sent sequence
    hands it to the first remaining member's record, so that recovery (which
    takes the highest lastSent of the members) starts the group where it
    was. Not needed when that message is among the pending ones handed over:
    the member receiving it records it as its own lastSent."""
    if leaving.last_sent != group.last_sent or group.last_sent in leaving.pending:
        return
    first = group.members[0]
    first.last_sent = group.last_sent
    first.channel.subs_store.update_sub(first.to_state())


def find_by_inbox(ch: Channel, inbox: str) -> Subscription | None:
    """The online subscription an unsubscribe request names: clients send
    the ack inbox (or, older ones, the delivery inbox)."""
    sub = ch.by_ack.get(inbox)
    if sub is None:
        for s in ch.by_ack.values():
            if s.inbox == inbox:
                return s
    return sub
