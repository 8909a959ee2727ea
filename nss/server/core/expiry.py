"""Channel expiry: messages past MaxAge, channels idle past MaxInactivity.

The decisions are plain functions of a channel and the time; ``ChannelExpiry``
only arms the timers and runs what they decide on the ordered I/O path (so
an expiry never overtakes a publish or a subscribe queued before it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from nss.server.core.channels import ChannelRegistry
from nss.server.core.model import Channel
from nss.stores.base import Store, StoreError


class Ordered(Protocol):
    """The I/O path as expiry sees it: run a function, in order."""

    def call(self, fn: Callable[..., Any], *args: Any) -> None: ...

    def acall(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None: ...


def inactivity_left(ch: Channel, now_ns: int) -> float:
    """Seconds before ``ch`` may be deleted for inactivity; 0 when it may
    be now. A channel never used since the start counts as idle throughout."""
    mi = ch.msgs.limits.max_inactivity
    if not ch.last_activity:
        return 0.0
    idle = (now_ns - ch.last_activity) / 1e9
    return 0.0 if idle >= mi else mi - idle


class ChannelExpiry:
    def __init__(self, channels: ChannelRegistry, store: Store, io: Ordered, log: Any) -> None:
        self.channels = channels
        self.store = store
        self.io = io
        self.log = log
        # set at shutdown: no new inactivity timer
        self.closed = False

    def after_publish(self, ch: Channel) -> None:
        """A batch stored messages in ``ch``: it is active, and they age."""
        ch.last_activity = ch.last_ts
        if ch.msgs.limits.max_age > 0 and ch.age_handle is None:
            self._arm_age(ch, ch.msgs.limits.max_age)

    # ------------------------------------------------------------ age
    def _arm_age(self, ch: Channel, delay: float) -> None:
        loop = asyncio.get_running_loop()
        ch.age_handle = loop.call_later(delay, self.io.call, self.expire_messages, ch)

    def expire_messages(self, ch: Channel) -> None:
        ch.age_handle = None
        if self.channels.get(ch.name) is not ch:
            return
        nxt = ch.msgs.expire(time.time_ns())
        if nxt is not None:
            self._arm_age(ch, nxt)

    # ------------------------------------------------------------ inactivity
    def arm_inactivity(self, ch: Channel, delay: float | None = None) -> None:
        mi = ch.msgs.limits.max_inactivity
        if mi <= 0 or self.closed:
            return
        if ch.inactivity_handle is not None:
            ch.inactivity_handle.cancel()
        loop = asyncio.get_running_loop()
        ch.inactivity_handle = loop.call_later(
            mi if delay is None else delay, self.io.acall, self._check_inactive, ch
        )

    def disarm_inactivity(self, ch: Channel) -> None:
        if ch.inactivity_handle is not None:
            ch.inactivity_handle.cancel()
            ch.inactivity_handle = None

    async def _check_inactive(self, ch: Channel) -> None:
        ch.inactivity_handle = None
        if self.channels.get(ch.name) is not ch or ch.has_active_subs():
            return
        left = inactivity_left(ch, time.time_ns())
        if left > 0:
            self.arm_inactivity(ch, left)
            return
        ch.deleting = True
        try:
            self.store.delete_channel(ch.name)
            await self.store.flush()
        except StoreError as e:
            self.log.error(f'Unable to delete channel "{ch.name}": {e}')
            ch.deleting = False
            return
        for s in ch.all_subs():
            s.cancel_timer()
        self.channels.remove(ch.name)
        self.log.info(f'Channel "{ch.name}" has been deleted due to inactivity')
