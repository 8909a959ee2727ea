"""Rebuilding the server's clients, channels and subscriptions from what a
store recovered (stores.md §1.4), before the server starts serving them.

Kept apart from the protocol handlers: it runs once per start or FT
activation and decides, record by record, what each stored subscription
becomes (online, offline durable, durable queue shadow, or a ghost that is
dropped).
"""

from __future__ import annotations

from nss.pb import spb_pb2 as spb
from nss.server.core.channels import ChannelRegistry
from nss.server.core.clients import ClientRegistry
from nss.server.core.model import Channel, Client, QueueGroup, Subscription
from nss.server.core.subscriptions import attach
from nss.stores.base import RecoveredState


def restore_state(rs: RecoveredState, clients: ClientRegistry, channels: ChannelRegistry) -> int:
    """Fill the registries; returns the number of subscriptions kept. Ack
    inboxes are listened on and timers armed when the server starts serving."""
    for ci in rs.clients:
        clients.add(Client.from_info(ci))
    nsubs = 0
    for name, rc in rs.channels.items():
        ch = Channel(name, rc.channel)
        ts = ch.msgs.timestamp_of(ch.msgs.last_sequence())
        ch.last_ts = ch.last_activity = ts or 0
        channels.add(ch)
        for rsub in rc.subscriptions:
            if restore_sub(clients, ch, rsub.sub, rsub.pending):
                nsubs += 1
    return nsubs


def restore_sub(
    clients: ClientRegistry, ch: Channel, st: spb.SubState, pending: set[int]
) -> bool:
    """One stored subscription record back into the channel (also the
    subscriptions of a Go Raft snapshot, which are the same records).
    False: a ghost, dropped from the store."""
    sub = Subscription(ch)
    sub.id = st.ID
    sub.client_id = st.clientID
    sub.qgroup = st.qGroup
    sub.inbox = st.inbox
    sub.ack_inbox = st.ackInbox
    sub.max_inflight = st.maxInFlight or 1
    sub.ack_wait = st.ackWaitInSecs or 30
    sub.durable_name = st.durableName
    sub.is_durable = st.isDurable
    sub.is_closed = st.isClosed
    sub.last_sent = st.lastSent
    # no deadline known: the first redelivery pass uses timestamp + AckWait
    sub.pending = dict.fromkeys(sorted(pending), 0.0)
    # offline durables and queue shadows too: monitoring reports it (Go)
    sub.stalled = len(sub.pending) >= sub.max_inflight
    client = clients.get(st.clientID) if st.clientID else None
    if st.qGroup:
        group = ch.queues.get(st.qGroup)
        if group is None:
            group = QueueGroup(st.qGroup, ch, st.isDurable)
            ch.queues[st.qGroup] = group
        group.last_sent = max(group.last_sent, st.lastSent)
        if st.isDurable and not st.clientID:
            sub.group = group
            group.shadow = sub
            return True
        if client is None:
            # a member whose client is gone: a ghost, dropped (stores.md §1.4)
            ch.subs_store.delete_sub(st.ID)
            if not group.members and group.shadow is None:
                del ch.queues[st.qGroup]
            return False
        sub.group = group
        group.members.append(sub)
    elif st.isDurable:
        ch.durables[sub.durable_key] = sub
        if st.isClosed or client is None:
            return True
    elif client is None:
        ch.subs_store.delete_sub(st.ID)
        return False
    assert client is not None
    sub.client = client
    sub.failed_hb = client.failed_hb > 0
    attach(sub, client)
    return True
