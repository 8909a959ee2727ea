"""The store contract every backend (MEMORY, FILE, SQL) implements.

Messages cross this interface as encoded ``MsgProto`` bytes: the FILE store
writes exactly those bytes into its ``.dat`` records and the SQL store into
``Messages.data``, so the server encodes a message once and never decodes it
again on the delivery path.

Writes are buffered by the stores and made durable by ``flush``; the server's
I/O path calls ``flush`` once per channel per batch before it sends PubAcks.
Everything else is synchronous so that the hot path does not await per
message.

Flush scope: a store may commit more than the object it is called on. The
SQL store journals every change of every channel and commits all of it in
one transaction on the first ``flush`` (of any MsgStore, SubStore or the
Store); later calls in the same batch find nothing left and return at once.
Either way, when ``flush`` returns without raising, everything the caller
changed before calling it is durable; when it raises StoreError nothing may
be acknowledged.

Failed publish batches are rolled back (``MsgStore.mark``/``rollback``/
``release``): a publisher answered with an error retries, so an error PubAck
must mean "not stored", on every backend. The I/O path marks a channel's
message store before the first ``store`` of a batch; if a ``store`` or the
``flush`` fails it calls ``rollback`` and the messages of the batch are gone
from memory and from the disk or database, with the channel's first/last
sequence, count and bytes as they were at the mark; otherwise it calls
``release``. Without a mark a failed flush keeps what it could not write and
writes it with the next flush (nobody was told it failed).

Reads stay synchronous: ``lookup`` of a store backed by a database serves
recent messages from memory and reads older ones with a short blocking
query; ``MsgStore.prefetch`` lets the server load a range it is about to
replay without blocking the event loop.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from nss.log import get_logger
from nss.options import ChannelLimits, StoreLimits
from nss.pb import spb_pb2 as spb
from nss.stores.lock import StoreLock
from nss.units import friendly_bytes

ERR_TOO_MANY_CHANNELS = "too many channels"
ERR_TOO_MANY_SUBS = "too many subscriptions per channel"
ERR_ALREADY_EXISTS = "already exists"
ERR_NOT_FOUND = "not found"
# Recover(): server.dat holds no state but channel directories exist; the
# server then calls init() and recover() again (stores.md §1.1).
ERR_NO_SRV_BUT_CHANNELS = "no server state recovered but channels present"
# nss-migrate registers this client first (right after the server info) and
# removes it last: a store still holding it is a copy that was interrupted,
# which a server must refuse rather than serve half of it. The ':' is never
# valid in a real client ID.
MIGRATE_MARKER_ID = "nss-migrate:incomplete"
ERR_INCOMPLETE_COPY = (
    "the store is an incomplete copy (nss-migrate was interrupted before it "
    "finished): empty it and run nss-migrate again"
)

_log = get_logger()


class StoreError(Exception):
    """A store failure whose text is passed through to clients, as in Go."""


class MsgCipher(Protocol):
    """Encryption at rest of one channel (``nss.stores.crypto.ChannelCipher``)."""

    def seal_msg(self, msg: bytes) -> bytes: ...

    def open_msg(self, msg: bytes) -> bytes: ...

    def sealed_size(self, msg: bytes) -> int: ...


class StoreCipher(Protocol):
    """Encryption at rest of a store (``nss.stores.crypto.StoreCrypto``)."""

    def attach(self, channels: Iterable[ChannelStore]) -> None: ...


@dataclass
class RecoveredSubscription:
    sub: spb.SubState
    pending: set[int] = field(default_factory=set)


@dataclass
class RecoveredChannel:
    channel: ChannelStore
    subscriptions: list[RecoveredSubscription] = field(default_factory=list)


@dataclass
class RecoveredState:
    info: spb.ServerInfo
    clients: list[spb.ClientInfo] = field(default_factory=list)
    channels: dict[str, RecoveredChannel] = field(default_factory=dict)


def check_complete(rs: RecoveredState | None) -> None:
    """StoreError when the recovered store is an interrupted nss-migrate copy."""
    if rs is not None and any(c.ID == MIGRATE_MARKER_ID for c in rs.clients):
        raise StoreError(ERR_INCOMPLETE_COPY)


class MsgStore(ABC):
    """Messages of one channel, keyed by the sequence the server assigns.

    The count/bytes limits are one rule for every backend (``apply_limits``);
    a driver only says how to drop its oldest message (``_drop_oldest``).

    ``cipher`` (encryption at rest, ``nss.stores.crypto``): set by the Store
    once the channel is open; a driver that persists messages seals what it
    writes and opens what it reads back, and keeps plaintext in memory."""

    cipher: MsgCipher | None = None

    def __init__(self, name: str, limits: ChannelLimits) -> None:
        self.name = name
        self.limits = limits
        # the "Reached limits" warning is logged once per channel (as Go);
        # part of what a rollback restores
        self.hit_limit = False
        # A driver's store() calls apply_limits only when its count or bytes
        # go over these (MaxMsgs/MaxBytes, or never): the common case then
        # costs two comparisons instead of a call, on the per-message path.
        self.over_msgs = limits.max_msgs if limits.max_msgs > 0 else sys.maxsize
        self.over_bytes = limits.max_bytes if limits.max_bytes > 0 else sys.maxsize

    @abstractmethod
    def store(self, seq: int, timestamp: int, data: bytes) -> None:
        """Append an encoded MsgProto, then ``apply_limits`` when the count
        or the bytes are over ``over_msgs``/``over_bytes``."""

    def store_many(self, first: int, timestamps: Sequence[int], datas: list[bytes]) -> None:
        """``store`` of messages ``first``, ``first + 1``, ... in order: what a
        publish batch hands over at commit. A driver overrides it when it can
        append them together (one framing call, one counter update); it must
        end in the state the one-by-one stores would have left."""
        for k, (ts, data) in enumerate(zip(timestamps, datas, strict=True)):
            self.store(first + k, ts, data)

    def apply_limits(self, count: int, nbytes: int, report: bool = True) -> None:
        """MaxMsgs/MaxBytes (stores.md §2.4): drop the oldest messages while
        the channel is over either, but always keep the newest one.

        ``count``, ``nbytes``: the channel's state now, as ``state()`` says.
        The first drop of a channel's life logs Go's
        warning, with the count and bytes left after that drop
        (``report=False`` on recovery, where Go stays silent). Stops early
        when the driver cannot drop now (it logged why); the next store
        tries again."""
        lim = self.limits
        mm, mb = lim.max_msgs, lim.max_bytes
        while count > 1 and ((mm > 0 and count > mm) or (mb > 0 and nbytes > mb)):
            if not self._drop_oldest():
                return
            count, nbytes = self.state()
            if report and not self.hit_limit:
                self.hit_limit = True
                _log.warning(
                    f'Reached limits for store "{self.name}" (msgs={count}/{mm} '
                    f"bytes={friendly_bytes(nbytes)}/{friendly_bytes(mb)}), "
                    "dropping old messages to make room for new ones"
                )

    @abstractmethod
    def _drop_oldest(self) -> bool:
        """Remove the first message for the limits (a rollback brings it
        back, see ``mark``). False when that is impossible now: the driver
        logs why."""

    @abstractmethod
    def lookup(self, seq: int) -> bytes | None:
        """Encoded MsgProto, or None when absent, expired or out of range."""

    def lookup_many(self, first: int, last: int) -> list[bytes | None]:
        """``lookup`` of each of ``first``..``last``, in one call: what a
        delivery sends a subscription (``nss.hot.send_span``), so that a
        store that can answer a span at once saves a call per message."""
        return [self.lookup(s) for s in range(first, last + 1)]

    @abstractmethod
    def first_sequence(self) -> int: ...

    @abstractmethod
    def last_sequence(self) -> int: ...

    @abstractmethod
    def timestamp_of(self, seq: int) -> int | None: ...

    @abstractmethod
    def state(self) -> tuple[int, int]:
        """(message count, bytes) as the monitoring endpoints report them."""

    def get_sequence_from_timestamp(self, ts: int) -> int:
        """First sequence whose timestamp is >= ts (store contract §1.3)."""
        first, last = self.first_sequence(), self.last_sequence()
        if last == 0:
            return 0
        if first > last:
            return last + 1
        last_ts = self.timestamp_of(last)
        if last_ts is None or ts > last_ts:
            return last + 1
        lo, hi = first, last
        while lo < hi:
            mid = (lo + hi) // 2
            mts = self.timestamp_of(mid)
            if mts is None or mts < ts:
                lo = mid + 1
            else:
                hi = mid
        return lo

    async def flush(self) -> None:
        """Make buffered messages durable (no-op in memory)."""

    async def prefetch(self, first_seq: int, last_seq: int) -> None:
        """Hint: messages ``first_seq..last_seq`` are about to be looked up
        (a subscriber replaying history). Stores that read from a database
        load them off the event loop so that those ``lookup`` calls do not
        block; a no-op for in-memory and file stores. Failing is harmless:
        ``lookup`` reads whatever was not prefetched."""

    @abstractmethod
    def mark(self) -> None:
        """Start of a publish batch: remember the state ``rollback`` returns to.

        Messages dropped by the count/bytes limits while the mark is set must
        come back on rollback, so a store defers whatever it cannot undo
        (deleting files) to ``release``. A second ``mark`` releases the first."""

    @abstractmethod
    def rollback(self) -> None:
        """The batch failed: forget every message stored since ``mark``.

        Afterwards the first/last sequence, count and bytes are those of the
        mark and nothing stored since is (or later becomes) durable, so the
        next ``store`` reuses the sequence. Never raises: when the durable
        copy cannot be cut back (an I/O error while truncating) the store
        logs it and refuses ``store`` until it could, rather than mix new
        messages with the failed ones. No-op without a mark."""

    @abstractmethod
    def release(self) -> None:
        """The batch is durable (``flush`` returned): drop the mark."""

    @abstractmethod
    def expire(self, now_ns: int) -> float | None:
        """Drop messages older than MaxAge; seconds until the next expiry."""

    @abstractmethod
    def empty(self) -> None: ...

    def close(self) -> None:
        pass


class SubStore(ABC):
    """Subscription records of one channel.

    MaxSubscriptions is checked here for every backend; the driver counts
    its records and creates one (``_sub_count``, ``_create_sub``)."""

    # whether add_seq_pending/ack_seq_pending record anything (a delivery
    # skips the calls when not)
    tracks_pending = True

    def __init__(self, limits: ChannelLimits) -> None:
        self.limits = limits

    def create_sub(self, sub: spb.SubState) -> None:
        """Refuse a subscription over MaxSubscriptions (every record of the
        channel counts: offline durables, shadows, queue members), else
        assign ``sub.ID`` and persist it."""
        self.check_writable()
        ms = self.limits.max_subscriptions
        if ms > 0 and self._sub_count() >= ms:
            raise StoreError(ERR_TOO_MANY_SUBS)
        self._create_sub(sub)

    def check_writable(self) -> None:
        """StoreError when the store cannot take a write now (SQL: database
        unreachable, or fenced off), before any limit is judged."""

    @abstractmethod
    def _sub_count(self) -> int:
        """Subscription records of the channel (MaxSubscriptions)."""

    @abstractmethod
    def _create_sub(self, sub: spb.SubState) -> None:
        """Assign ``sub.ID`` (unique in the store) and persist the record."""

    @abstractmethod
    def update_sub(self, sub: spb.SubState) -> None: ...

    @abstractmethod
    def delete_sub(self, sub_id: int) -> None: ...

    @abstractmethod
    def add_seq_pending(self, sub_id: int, seq: int) -> None: ...

    def add_seqs_pending(self, sub_id: int, seqs: list[int]) -> None:
        """``add_seq_pending`` of each of ``seqs`` (ascending): a delivery's
        messages in one call."""
        for seq in seqs:
            self.add_seq_pending(sub_id, seq)

    @abstractmethod
    def ack_seq_pending(self, sub_id: int, seq: int) -> None: ...

    async def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class ChannelStore:
    name: str
    msgs: MsgStore
    subs: SubStore


class Store(ABC):
    """A backend's channels, clients and server info.

    Channel bookkeeping (``channels``, "already exists", MaxChannels, "not
    found") is written once here; drivers make and drop the channel's
    stores (``_new_channel``, ``_drop_channel``)."""

    name: str = ""
    # encryption at rest (None: off); set before recover()/create_channel
    crypto: StoreCipher | None = None

    def __init__(self, limits: StoreLimits) -> None:
        self.limits = limits.clone()
        self.channels: dict[str, ChannelStore] = {}

    def lock(self) -> StoreLock | None:
        """The lock that makes this server the store's only writer (FT, and
        a standalone FILE server); the same object on every call. None: the
        store cannot be shared (MEMORY, or SQL opened without FT)."""
        return None

    # Told (on the event loop) when the store stops taking writes (False:
    # SQL database lost, a commit held) and takes them again (True); the
    # server then answers publishes at once with ``check_writable``'s error
    # rather than queueing them behind a held commit.
    on_availability: Callable[[bool], None] | None = None

    def check_writable(self) -> None:
        """StoreError when the store refuses every write for now (SQL:
        database unreachable, a commit stalled, fenced off)."""

    @abstractmethod
    def init(self, info: spb.ServerInfo) -> None: ...

    @abstractmethod
    def recover(self) -> RecoveredState | None: ...

    def create_channel(self, name: str) -> ChannelStore:
        """A new channel with its effective limits; MaxChannels applies to
        created channels only (recovered ones are never refused)."""
        if name in self.channels:
            raise StoreError(ERR_ALREADY_EXISTS)
        mc = self.limits.max_channels
        if mc > 0 and len(self.channels) >= mc:
            raise StoreError(ERR_TOO_MANY_CHANNELS)
        cs = self._new_channel(name, self.channel_limits(name))
        if self.crypto is not None:
            self.crypto.attach((cs,))
        self.channels[name] = cs
        return cs

    def delete_channel(self, name: str) -> None:
        cs = self.channels.pop(name, None)
        if cs is None:
            raise StoreError(ERR_NOT_FOUND)
        self._drop_channel(cs)

    @abstractmethod
    def _new_channel(self, name: str, limits: ChannelLimits) -> ChannelStore:
        """Make (and persist) the stores of a channel that passed the checks."""

    @abstractmethod
    def _drop_channel(self, cs: ChannelStore) -> None:
        """Remove a channel already taken out of ``channels``."""

    @abstractmethod
    def add_client(self, info: spb.ClientInfo) -> None: ...

    @abstractmethod
    def delete_client(self, client_id: str) -> None: ...

    async def flush(self) -> None:
        """Make client/server records durable."""

    async def close(self) -> None:
        pass

    def channel_limits(self, name: str) -> ChannelLimits:
        return effective_limits(self.limits, name)


def effective_limits(limits: StoreLimits, name: str) -> ChannelLimits:
    """Limits that apply to channel ``name``.

    Per-channel and wildcard entries (config files) resolve to the narrowest
    match; without them the global limits apply."""
    if limits.per_channel:
        from nss.stores.limits import lookup

        found = lookup(limits, name)
        if found is not None:
            return found
    return limits.channel_defaults()
