"""Recovery of the SQL store (stores.md §4.7-4.9): the server info, the
clients, and every channel with its messages' range and its subscriptions.
What it finds is returned; the store adopts it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.engine import Connection, Engine

from nss.options import ChannelLimits
from nss.pb import spb_pb2 as spb
from nss.stores.base import (
    ERR_NO_SRV_BUT_CHANNELS,
    ChannelStore,
    RecoveredChannel,
    RecoveredState,
    StoreError,
)
from nss.stores.sql.context import StoreServices
from nss.stores.sql.msgs import SQLMsgStore
from nss.stores.sql.statements import SQL_VERSION, Statements
from nss.stores.sql.subs import SQLSubStore


@dataclass
class Recovered:
    """What the database holds; ``state`` None: no server info yet."""

    state: RecoveredState | None
    max_channel_id: int = 0
    max_sub_id: int = 0
    # channels deleted but whose rows are still there (purged in the background)
    to_purge: list[int] = field(default_factory=list)


class SQLRecovery:
    """One recovery of a store. ``fence`` starts every write transaction
    (FT: the StoreLock row must still be ours); ``store`` is what the
    recovered channels' stores journal to."""

    def __init__(
        self,
        engine: Engine,
        stmts: Statements,
        store: StoreServices,
        channel_limits: Callable[[str], ChannelLimits],
        fence: Callable[[Connection], None],
    ) -> None:
        self._engine = engine
        self._stmts = stmts
        self._store = store
        self._channel_limits = channel_limits
        self._fence = fence

    def run(self) -> Recovered:
        s = self._stmts
        with self._engine.connect() as c:
            row = c.execute(s.recover_server_info).first()
            if row is None:
                if (c.execute(s.max_channel_id).scalar() or 0) > 0:
                    raise StoreError(ERR_NO_SRV_BUT_CHANNELS)
                return Recovered(None)
            cluster_id, data, version = row
            if version != SQL_VERSION:
                raise StoreError(
                    f"sql: unsupported version: {version} (supports [1..{SQL_VERSION}])"
                )
            info = spb.ServerInfo()
            info.ParseFromString(bytes(data or b""))
            if info.ClusterID != cluster_id:
                raise StoreError(
                    f'sql: id "{cluster_id}" in column does not match cluster ID in data '
                    f'"{info.ClusterID}"'
                )
            rs = RecoveredState(info=info)
            out = Recovered(rs)
            for cid_, hb, proto in c.execute(s.recover_clients).all():
                ci = spb.ClientInfo()
                if proto:
                    ci.ParseFromString(bytes(proto))
                else:
                    ci.ID, ci.HbInbox = cid_, hb or ""
                rs.clients.append(ci)
            out.max_channel_id = int(c.execute(s.max_channel_id).scalar() or 0)
            if out.max_channel_id == 0:
                return out
            out.max_sub_id = int(c.execute(s.max_sub_id).scalar() or 0)
            chans = [(int(r[0]), r[1], int(r[2] or 0)) for r in c.execute(s.channels_list).all()]
            out.to_purge = [int(r[0]) for r in c.execute(s.deleted_channels).all()]
            c.rollback()
        for cid, name, maxseq in chans:
            with self._engine.begin() as c:
                self._fence(c)
                rc = self._channel(c, cid, name, maxseq)
            rs.channels[name] = rc
        return out

    def _channel(self, c: Connection, cid: int, name: str, maxseq: int) -> RecoveredChannel:
        s = self._stmts
        limits = self._channel_limits(name)
        ms = SQLMsgStore(self._store, name, cid, limits)
        ss = SQLSubStore(self._store, cid, limits)
        stored_maxseq = maxseq
        maxseq = max(maxseq, int(c.execute(s.last_seq, {"id": cid}).scalar() or 0))
        self._apply_limits(c, cid, limits)
        count, first, last, total = (int(v) for v in c.execute(s.channel_msgs, {"id": cid}).one())
        subs, sent = ss.recover(c, first)
        maxseq = max(maxseq, sent)
        if maxseq > last:
            first = maxseq + 1
            last = maxseq
            if count == 0 and maxseq > stored_maxseq:
                # nothing left: keep the sequence for the next restart too
                c.execute(s.update_maxseq, {"maxseq": maxseq, "id": cid})
        ms.recovered(count, first, last, total)
        return RecoveredChannel(channel=ChannelStore(name, ms, ss), subscriptions=subs)

    def _apply_limits(self, c: Connection, cid: int, limits: ChannelLimits) -> None:
        """The channel's limits as configured now (stores.md §4.9): expire
        by age, cut to MaxMsgs/MaxBytes when they shrank, and record them."""
        s = self._stmts
        smm, smb, sma = c.execute(s.channel_limits, {"id": cid}).one()
        smm, smb, sma = int(smm or 0), int(smb or 0), int(sma or 0)
        max_age = int(limits.max_age * 1e9)
        if max_age > 0:
            c.execute(s.expire_msgs, {"id": cid, "ts": time.time_ns() - max_age})
        mm = limits.max_msgs
        if 0 < mm < smm:
            count = int(c.execute(s.msgs_count, {"id": cid}).scalar() or 0)
            if count > 1 and count > mm:
                floor = c.execute(s.seq_floor_max_msgs, {"id": cid, "n": mm}).scalar()
                if floor:
                    c.execute(s.delete_below, {"id": cid, "seq": int(floor)})
        mb = limits.max_bytes
        if 0 < mb < smb:
            total = int(c.execute(s.total_size, {"id": cid}).scalar() or 0)
            if total > mb:
                floor = int(c.execute(s.seq_floor_max_bytes, {"id": cid, "n": mb}).scalar() or 0)
                if floor == 0:
                    floor = int(c.execute(s.last_seq, {"id": cid}).scalar() or 0)
                if floor > 0:
                    c.execute(s.delete_below, {"id": cid, "seq": floor})
        if (smm, smb, sma) != (mm, mb, max_age):
            c.execute(
                s.update_channel_limits,
                {"maxmsgs": mm, "maxbytes": mb, "maxage": max_age, "id": cid},
            )
