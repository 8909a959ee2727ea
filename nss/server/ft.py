"""Fault tolerance: the standby / active state machine (ft.md).

Every member starts as standby: it listens on ``_STAN.ft.<cid>.<group>``
and touches no store data. When the active's heartbeats stop for the missed
interval it tries the store lock; with the lock it activates (recovers the
store and serves), heartbeats every interval, and keeps proving it still
owns the lock. Every decision is one log line with a stable wording, so
operators' alerts and the tests assert what the server decided.

The heartbeat is the Go server's ``CtrlMsg{FTHeartbeat, ServerID, Data}``
with Data in Go's ``time.Time.MarshalBinary`` format, so nss and Go servers
can share a group (a rolling migration).
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

from google.protobuf.message import DecodeError

from nss.nats.connection import NatsConnection, NatsError
from nss.pb import spb_pb2 as spb

# seconds between 0001-01-01 and 1970-01-01, as Go's time encoding counts
_GO_EPOCH_OFFSET = 62135596800

LOG_STANDBY = "Starting in standby mode"
LOG_ACTIVE = "Server is active"
LOG_NO_LOCK = "ft: unable to get store lock at this time, going back to standby"


def go_time_marshal(ns: int) -> bytes:
    """Go ``time.Time.MarshalBinary`` of a Unix time in ns, UTC location."""
    secs, nsec = divmod(ns, 1_000_000_000)
    return struct.pack(">BqiH", 1, secs + _GO_EPOCH_OFFSET, nsec, 0xFFFF)


def go_time_unmarshal(data: bytes) -> int:
    """Unix ns from Go's binary time (versions 1 and 2); ValueError if bad."""
    if not data or data[0] not in (1, 2):
        raise ValueError("Time.UnmarshalBinary: unsupported version")
    want = 15 if data[0] == 1 else 16
    if len(data) != want:
        raise ValueError("Time.UnmarshalBinary: invalid length")
    _, secs, nsec, _ = struct.unpack(">BqiH", data[:15])
    return (secs - _GO_EPOCH_OFFSET) * 1_000_000_000 + nsec


def jitter(value: float, rng: random.Random | None = None) -> float:
    """Up to ±10 %, once per process, so members of a group do not tick in
    lock-step (the Go server does the same)."""
    r = rng or random
    off = value * r.random() * 0.1
    return value + off if r.random() < 0.5 else value - off


class LockLost(Exception):
    pass


class FTLoop:
    """Drives standby -> active; ``activate`` is the server's start-serving.

    ``try_lock`` returns True (we own the store), False (someone else does)
    or raises (store unreachable: logged, and we keep standing by).
    ``check_lock`` raises LockLost when an active no longer owns the store.
    """

    def __init__(
        self,
        conn: NatsConnection,
        cluster_id: str,
        group: str,
        server_id: str,
        *,
        hb_interval: float,
        missed_interval: float,
        try_lock: Callable[[], Awaitable[bool]],
        check_lock: Callable[[], Awaitable[None]],
        activate: Callable[[], Awaitable[None]],
        fatal: Callable[[str], None],
        log: Any,
    ) -> None:
        self.conn = conn
        self.subject = f"_STAN.ft.{cluster_id}.{group}"
        self.server_id = server_id
        self.hb_interval = hb_interval
        self.missed_interval = missed_interval
        self._try_lock = try_lock
        self._check_lock = check_lock
        self._activate = activate
        self._fatal = fatal
        self.log = log
        self.state = "FT_STANDBY"
        self.activation_ns = 0
        self.heartbeats_seen = 0
        self._seen = asyncio.Event()
        self._peer: asyncio.Queue[spb.CtrlMsg] = asyncio.Queue()
        self._sid = 0
        self._task: asyncio.Task[None] | None = None
        self._activation: asyncio.Task[None] | None = None
        self._stopped = False

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._sid = self.conn.subscribe(self.subject, self._on_msg)
        self.log.info(LOG_STANDBY)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stopped = True
        if self._sid:
            self.conn.unsubscribe(self._sid)
            self._sid = 0
        if self._activation is not None and not self._activation.done():
            self._activation.cancel()
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping
                pass

    def _on_msg(self, _subject: str, _reply: str, payload: bytes) -> None:
        if self.state == "FT_STANDBY":
            # any message on the subject restarts the wait (ft.md §4)
            self.heartbeats_seen += 1
            self._seen.set()
            return
        try:
            msg = spb.CtrlMsg.FromString(payload)
        except DecodeError:
            return
        if msg.MsgType != spb.CtrlMsg.FTHeartbeat or msg.ServerID == self.server_id:
            return
        self.heartbeats_seen += 1
        self._peer.put_nowait(msg)

    async def _run(self) -> None:
        try:
            await self._standby()
            if self._stopped:
                return
            await self._active()
        except asyncio.CancelledError:
            raise
        except LockLost as e:
            self._fatal(str(e))
        except Exception as e:  # noqa: BLE001 - any failure here ends the process
            self._fatal(f"ft: {e}")

    # ------------------------------------------------------------ standby
    async def _standby(self) -> None:
        quiet_log = 1.0
        next_log = 0.0
        while not self._stopped:
            self._seen.clear()
            try:
                await asyncio.wait_for(self._seen.wait(), self.missed_interval)
                continue  # the active is alive
            except TimeoutError:
                pass
            try:
                locked = await self._try_lock()
            except Exception as e:  # noqa: BLE001 - errors are not fatal here (ft.md §4)
                self.log.error(
                    "ft: error attempting to get the store lock: "
                    f"ft: fatal error getting the store lock: {e}"
                )
                continue
            if locked:
                break
            now = time.monotonic()
            if now >= next_log:
                self.log.info(LOG_NO_LOCK)
                next_log = now + quiet_log
                quiet_log = min(quiet_log * 2, 60.0)
        if self._stopped:
            return
        self.state = "FT_ACTIVE"
        self.activation_ns = time.time_ns()
        self.log.info(LOG_ACTIVE)
        self._send_heartbeat()
        # recovery may take a while: heartbeats and lock checks go on meanwhile
        self._activation = asyncio.get_running_loop().create_task(self._activate())
        self._activation.add_done_callback(self._activation_done)

    def _activation_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._stopped:
            return
        exc = task.exception()
        if exc is not None:
            self._fatal(str(exc))

    # ------------------------------------------------------------ active
    def _send_heartbeat(self) -> None:
        hb = spb.CtrlMsg(
            MsgType=spb.CtrlMsg.FTHeartbeat,
            ServerID=self.server_id,
            Data=go_time_marshal(self.activation_ns),
        )
        try:
            self.conn.publish(self.subject, hb.SerializeToString())
        except NatsError as e:
            self.log.error(f"ft: unable to send heartbeat: {e}")

    async def _active(self) -> None:
        loop = asyncio.get_running_loop()
        next_hb = loop.time() + self.hb_interval
        while not self._stopped:
            try:
                msg = await asyncio.wait_for(self._peer.get(), max(0.0, next_hb - loop.time()))
            except TimeoutError:
                msg = None
            if msg is not None:
                self._on_peer_heartbeat(msg)
            if loop.time() >= next_hb or msg is not None:
                await self._check_lock()
                self._send_heartbeat()
                next_hb = loop.time() + self.hb_interval

    def _on_peer_heartbeat(self, msg: spb.CtrlMsg) -> None:
        """Two actives hear each other: the later activation steps down (§7)."""
        try:
            peer_ns = go_time_unmarshal(msg.Data)
        except ValueError as e:
            self.log.error(f"Error decoding activation time: {e}")
            return
        if peer_ns < self.activation_ns:
            raise LockLost(f'ft: serverID "{msg.ServerID}" claims to be active, aborting')
        self.log.error(f'ft: serverID "{msg.ServerID}" claims to be active')
