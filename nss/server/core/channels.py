"""Channels: the registry (unique names, case conflicts); the name rules
are in ``nss.subjects``."""

from __future__ import annotations

from nss.server.core.model import Channel
from nss.stores.base import Store
from nss.units import go_quote

ERR_CHANNEL_BEING_DELETED = "stan: channel is being deleted"


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
