"""The server's domain objects: clients, channels, subscriptions, queue groups.

They refer to one another (a subscription knows its channel, client and
group; a channel indexes its subscriptions), so they live in one module:
split apart they would import each other. Behaviour that is not plain
bookkeeping lives elsewhere: the subscription lifecycle in
``core.subscriptions``, delivery in ``server.delivery``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from nss.pb import spb_pb2 as spb
from nss.stores.base import ChannelStore


@dataclass(eq=False)
class Client:
    id: str
    hb_inbox: str
    conn_id: bytes = b""
    protocol: int = 0
    ping_interval: int = 0
    ping_max_out: int = 0
    subs: list[Subscription] = field(default_factory=list)
    failed_hb: int = 0
    hb_handle: asyncio.TimerHandle | None = None
    hb_task: asyncio.Task[None] | None = None
    closed: bool = False

    @classmethod
    def from_info(cls, ci: spb.ClientInfo) -> Client:
        """The client a stored ClientInfo record describes."""
        return cls(
            id=ci.ID,
            hb_inbox=ci.HbInbox,
            conn_id=ci.ConnID,
            protocol=ci.Protocol,
            ping_interval=ci.PingInterval,
            ping_max_out=ci.PingMaxOut,
        )

    def stop_heartbeats(self) -> None:
        if self.hb_handle is not None:
            self.hb_handle.cancel()
            self.hb_handle = None
        if self.hb_task is not None and not self.hb_task.done():
            self.hb_task.cancel()
        self.hb_task = None


class Channel:
    """A channel's store plus its live subscriptions.

    ``next_seq`` and ``last_ts`` live here, not in the store, because the I/O
    path assigns them while the store only records what it is given."""

    # slots: the compiled hot path reads and sets these per message
    __slots__ = (
        "age_handle", "by_ack", "deleting", "durables", "inactivity_handle", "last_activity",
        "last_ts", "msgs", "name", "next_seq", "plain", "queues", "store", "subs_store",
        "__weakref__",
    )  # fmt: skip

    def __init__(self, name: str, store: ChannelStore) -> None:
        self.name = name
        self.store = store
        self.msgs = store.msgs
        self.subs_store = store.subs
        self.next_seq = self.msgs.last_sequence() + 1
        self.last_ts = 0
        # plain (non-queue) subscriptions that are online
        self.plain: list[Subscription] = []
        # all subscriptions by ack inbox, online ones only
        self.by_ack: dict[str, Subscription] = {}
        # durable (non-queue) subscriptions by durable key, online or not
        self.durables: dict[str, Subscription] = {}
        self.queues: dict[str, QueueGroup] = {}
        self.deleting = False
        self.last_activity = 0
        self.inactivity_handle: asyncio.TimerHandle | None = None
        self.age_handle: asyncio.TimerHandle | None = None

    def all_subs(self) -> list[Subscription]:
        """Every subscription, in the order Go's monitoring lists them:
        online plain and durable ones, offline durables, then each queue
        group's members followed by its shadow (the offline record of a
        durable group whose members all left)."""
        out = list(self.plain)
        out.extend(d for d in self.durables.values() if d.client is None)
        for g in self.queues.values():
            out.extend(g.members)
            if g.shadow is not None:
                out.append(g.shadow)
        return out

    def has_active_subs(self) -> bool:
        return bool(self.plain) or any(g.members for g in self.queues.values())

    def stop_timers(self) -> None:
        for h in (self.inactivity_handle, self.age_handle):
            if h is not None:
                h.cancel()
        self.inactivity_handle = None
        self.age_handle = None


class Subscription:
    """A STAN subscription; its persisted form is ``to_state()``."""

    __slots__ = (
        "id",
        "client_id",
        "qgroup",
        "inbox",
        "ack_inbox",
        "max_inflight",
        "ack_wait",
        "durable_name",
        "is_durable",
        "is_closed",
        "last_sent",
        "channel",
        "client",
        "group",
        "pending",
        "stalled",
        "initialized",
        "ack_sid",
        "timer",
        "redeliveries",
        "failed_hb",
        "saved_client_id",
    )

    def __init__(self, channel: Channel) -> None:
        self.id = 0
        self.client_id = ""
        self.qgroup = ""
        self.inbox = ""
        self.ack_inbox = ""
        self.max_inflight = 1
        self.ack_wait = 30
        self.durable_name = ""
        self.is_durable = False
        self.is_closed = False
        self.last_sent = 0
        self.channel = channel
        self.client: Client | None = None
        self.group: QueueGroup | None = None
        # seq -> wall-clock deadline (0 = unknown, e.g. after recovery)
        self.pending: dict[int, float] = {}
        self.stalled = False
        self.initialized = False
        self.ack_sid = 0
        self.timer: asyncio.TimerHandle | None = None
        self.redeliveries: dict[int, int] = {}
        self.failed_hb = False
        # the client a queue shadow last belonged to (monitoring only)
        self.saved_client_id = ""

    @property
    def durable_key(self) -> str:
        return f"{self.client_id}-{self.channel.name}-{self.durable_name}"

    @property
    def online(self) -> bool:
        return self.client is not None

    def to_state(self) -> spb.SubState:
        return spb.SubState(
            ID=self.id,
            clientID=self.client_id,
            qGroup=self.qgroup,
            inbox=self.inbox,
            ackInbox=self.ack_inbox,
            maxInFlight=self.max_inflight,
            ackWaitInSecs=self.ack_wait,
            durableName=self.durable_name,
            lastSent=self.last_sent,
            isDurable=self.is_durable,
            isClosed=self.is_closed,
        )

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class QueueGroup:
    def __init__(self, name: str, channel: Channel, durable: bool) -> None:
        self.name = name  # stored form: "durable:group" for durable groups
        self.channel = channel
        self.durable = durable
        self.members: list[Subscription] = []
        self.last_sent = 0
        # the offline record of a durable group whose members all closed
        self.shadow: Subscription | None = None
        self.redeliveries: dict[int, int] = {}

    def pick(self) -> Subscription | None:
        """The member that gets the next message, or a redelivery (protocol.md
        §8.4, §8.5; Go's findBestQueueSub).

        Fewest pending among healthy, unstalled members, first on ties; if
        none qualifies, the first member (a stalled one is then not sent a
        new message, only a forced redelivery). The chosen head of the list
        rotates to the end, which makes equal loads round-robin."""
        members = self.members
        best: Subscription | None = None
        best_n = 0
        for m in members:
            if m.failed_hb or m.stalled:
                continue
            n = len(m.pending)
            if best is None or n < best_n:
                best, best_n = m, n
        if best is None and members:
            best = members[0]
        if best is not None and len(members) > 1 and members[0] is best:
            members.append(members.pop(0))
        return best
