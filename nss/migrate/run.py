"""One migration, start to end: open the source and recover it, refuse a
destination that is not empty, mark the destination as an incomplete copy,
copy, replay a Go clustered node's Raft state if asked, verify, and only
then remove the mark.

The mark (``MIGRATE_MARKER_ID``, a client record no real client can have)
is written with the server info before anything else, so a copy killed at
any later point leaves a store that ``nss`` refuses at start
(``nss.stores.base.check_complete``) instead of serving part of it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from nss.migrate.copy import copy_store
from nss.migrate.progress import Progress
from nss.migrate.raft.log import RaftLog
from nss.migrate.raft.replay import Replayer
from nss.migrate.summary import ChannelSummary, Digest, StoreSummary, rebuild
from nss.migrate.target import Target, TargetError, open_store
from nss.migrate.verify import verify_and_seal
from nss.options import StoreLimits
from nss.pb import spb_pb2 as spb
from nss.stores.base import (
    MIGRATE_MARKER_ID,
    RecoveredState,
    Store,
    StoreError,
    check_complete,
)


class MigrateError(Exception):
    """The migration cannot be done or did not verify; the text says why."""


@dataclass
class Plan:
    src: Target
    dst: Target
    raft_log: str = ""
    progress: bool = False
    # the limits both stores are opened with (target.copy_limits); None: none
    limits: StoreLimits | None = None


@dataclass
class Result:
    channels: int
    messages: int
    subscriptions: int
    clients: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


async def migrate(plan: Plan, say: Callable[[str], None]) -> Result:
    started = time.monotonic()
    raft = RaftLog(plan.raft_log) if plan.raft_log else None
    if plan.src.kind == "FILE" and not os.path.isdir(plan.src.path):
        raise MigrateError(f"source {plan.src.describe()} does not exist")
    if plan.dst.kind == "FILE":
        _check_dir_empty(plan.dst)
    src = open_store(plan.src, plan.limits)
    try:
        rs = await asyncio.to_thread(src.recover)
        check_complete(rs)
        if rs is None:
            raise MigrateError(f"source {plan.src.describe()} holds no store")
        total = sum(rc.channel.msgs.state()[0] for rc in rs.channels.values())
        say(f"source {plan.src.describe()}: {len(rs.channels)} channel(s), {total} message(s)")
        dst = open_store(plan.dst, plan.limits)
        try:
            await _check_empty(plan.dst, dst)
            await _mark(dst, rs.info)
            progress = Progress(total, plan.progress)
            expected, digests = await copy_store(rs, dst, progress)
            progress.finish()
            if raft is not None:
                expected = await _replay(raft, dst, digests, say)
            await expect_messages(expected, rs, dst, digests)
        finally:
            await dst.close()
    finally:
        await src.close()
    say("verifying the copy")
    diffs = await verify_and_seal(plan.dst, plan.limits, expected)
    if diffs:
        raise MigrateError(
            "the copy does not match its source; the destination stays marked as an "
            "incomplete copy:\n  " + "\n  ".join(diffs)
        )
    return Result(
        channels=len(expected.channels),
        messages=sum(c.count for c in expected.channels.values()),
        subscriptions=sum(c.subs for c in expected.channels.values()),
        clients=len(expected.clients),
        seconds=time.monotonic() - started,
    )


async def _replay(
    raft: RaftLog, dst: Store, digests: dict[str, Digest], say: Callable[[str], None]
) -> StoreSummary:
    """Apply the Raft state onto the copied store; what the destination
    must then hold (the messages' digests are filled in by the caller)."""
    replayer = Replayer(dst, digests, say)
    report = replayer.run(raft)
    say(
        f"raft: {report.entries} log entries after snapshot index "
        f"{report.snapshot_index}; applied {_counts(report.applied)}, "
        f"{report.skipped} skipped"
        + (
            f", {report.messages_added} message(s) taken from the log"
            if report.messages_added
            else ""
        )
    )
    positions = await replayer.persist()
    expected = StoreSummary(clients=replayer.client_ids())
    for name, (subs, pending) in positions.items():
        expected.channels[name] = ChannelSummary(subs=subs, pending=pending)
    return expected


async def expect_messages(
    expected: StoreSummary, rs: RecoveredState, dst: Store, digests: dict[str, Digest]
) -> None:
    """Each channel's messages as the destination must hold them: from the
    first sequence it kept (its limits may have dropped older ones) to the
    last, with the checksum of exactly those."""
    for name, cs in expected.channels.items():
        ms = dst.channels[name].msgs
        cs.first, cs.last = ms.first_sequence(), ms.last_sequence()
        d = digests.get(name) or Digest()
        if d.count and cs.first > d.first:
            rc = rs.channels.get(name)
            d = await rebuild(rc.channel.msgs if rc is not None else None, d, cs.first)
        cs.count, cs.sha256 = d.count, d.hexdigest()


def _counts(applied: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in sorted(applied.items())) or "nothing"


def _check_dir_empty(t: Target) -> None:
    """Before the FILE store is opened (which creates its lock file)."""
    try:
        names = os.listdir(t.path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise MigrateError(f"destination {t.describe()}: {e}") from e
    if names:
        raise MigrateError(_not_empty(t))


async def _check_empty(t: Target, dst: Store) -> None:
    try:
        rs = await asyncio.to_thread(dst.recover)
    except StoreError as e:
        raise MigrateError(f"{_not_empty(t)} ({e})") from e
    if rs is not None:
        raise MigrateError(_not_empty(t))


def _not_empty(t: Target) -> str:
    return (
        f"destination {t.describe()} is not empty: nss-migrate only copies into an "
        "empty store (an empty directory or database with the schema and no rows)"
    )


async def _mark(dst: Store, info: spb.ServerInfo) -> None:
    dst.init(info)
    dst.add_client(spb.ClientInfo(ID=MIGRATE_MARKER_ID, HbInbox="_nss-migrate"))
    await dst.flush()


__all__ = ["MigrateError", "Plan", "Result", "TargetError", "migrate"]
