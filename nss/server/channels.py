"""Channels: the registry and per-channel subscription indexes (the name
rules are in ``nss.subjects``)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from nss.stores.base import ChannelStore, Store
from nss.units import go_quote

if TYPE_CHECKING:
    from nss.server.subs import QueueGroup, Subscription

ERR_CHANNEL_BEING_DELETED = "stan: channel is being deleted"


class Channel:
    """A channel's store plus its live subscriptions.

    ``next_seq`` and ``last_ts`` live here, not in the store, because the I/O
    path assigns them while the store only records what it is given."""

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


class ChannelRegistry:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.channels: dict[str, Channel] = {}
        self._lower: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.channels)

    def get(self, name: str) -> Channel | None:
        return self.channels.get(name)

    def lookup_or_create(self, name: str) -> tuple[Channel, bool]:
        """The channel, and whether it was just created.

        Raises StoreError (limits) or ValueError carrying the client-facing
        text (case conflict, channel being deleted)."""
        ch = self.channels.get(name)
        if ch is not None:
            if ch.deleting:
                raise ValueError(ERR_CHANNEL_BEING_DELETED)
            return ch, False
        existing = self._lower.get(name.lower())
        if existing is not None and existing != name:
            raise ValueError(
                f"rejecting channel {go_quote(name)} because channel {go_quote(existing)} "
                "alreay exists (different cases not allowed)"
            )
        cs = self.store.create_channel(name)
        ch = Channel(name, cs)
        self.add(ch)
        return ch, True

    def add(self, ch: Channel) -> None:
        self.channels[ch.name] = ch
        self._lower[ch.name.lower()] = ch.name

    def remove(self, name: str) -> None:
        ch = self.channels.pop(name, None)
        if ch is not None:
            ch.stop_timers()
            if self._lower.get(name.lower()) == name:
                del self._lower[name.lower()]
