"""The FT asyncio driver with a fake NATS connection and fake store calls:
real timers (short intervals), no socket, no process."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from nss.server.ft.heartbeat import decode_heartbeat, encode_heartbeat
from nss.server.ft.loop import FTLoop
from nss.server.state import ServerState
from nss.stores.base import StoreError

ME = "MEMEMEMEMEMEMEMEMEMEME"
PEER = "PEERPEERPEERPEERPEERPE"
SUBJECT = "_STAN.ft.cid.grp"


class FakeConn:
    def __init__(self) -> None:
        self.subs: dict[int, Callable[[str, str, bytes], None]] = {}
        self.sent: list[bytes] = []

    def subscribe(self, subject: str, cb: Callable[[str, str, bytes], None]) -> int:
        assert subject == SUBJECT
        self.subs[len(self.subs) + 1] = cb
        return len(self.subs)

    def unsubscribe(self, sid: int) -> None:
        del self.subs[sid]

    def publish(self, subject: str, payload: bytes) -> None:
        assert subject == SUBJECT
        self.sent.append(payload)

    def deliver(self, payload: bytes) -> None:
        for cb in list(self.subs.values()):
            cb(SUBJECT, "", payload)


class FakeLog:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def info(self, text: str) -> None:
        self.lines.append(("info", text))

    def error(self, text: str) -> None:
        self.lines.append(("error", text))


class Harness:
    def __init__(self, *, locked: bool = True) -> None:
        self.conn = FakeConn()
        self.log = FakeLog()
        self.locked = locked
        self.owned: bool | Exception = True
        self.lock_calls = 0
        self.checks = 0
        self.activated = asyncio.Event()
        self.activate_error: Exception | None = None
        self.states: list[ServerState] = []
        self.fatal: list[str] = []
        self.loop = FTLoop(
            self.conn,
            "cid",
            "grp",
            ME,
            hb_interval=0.02,
            missed_interval=0.05,
            try_lock=self._try_lock,
            check_lock=self._check_lock,
            activate=self._activate,
            fatal=self.fatal.append,
            on_state=self.states.append,
            log=self.log,
        )

    async def _try_lock(self) -> bool:
        self.lock_calls += 1
        return self.locked

    async def _check_lock(self) -> bool:
        self.checks += 1
        if isinstance(self.owned, Exception):
            raise self.owned
        return self.owned

    async def _activate(self) -> None:
        self.activated.set()
        if self.activate_error is not None:
            raise self.activate_error


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_standby_activates_after_silence_heartbeats_and_stops_cleanly() -> None:
    h = Harness()
    h.loop.start()
    assert h.log.lines == [("info", "Starting in standby mode")]
    await asyncio.wait_for(h.activated.wait(), 5)
    assert h.log.lines[-1] == ("info", "Server is active")
    assert h.states == [ServerState.FT_STANDBY, ServerState.FT_ACTIVE]
    await until(lambda: h.checks >= 3 and len(h.conn.sent) >= 4)
    beat = decode_heartbeat(h.conn.sent[0])
    assert beat is not None and beat.server_id == ME
    await h.loop.stop()
    assert h.states[-1] == ServerState.SHUTDOWN and not h.conn.subs
    sent = len(h.conn.sent)
    await asyncio.sleep(0.1)
    assert len(h.conn.sent) == sent and not h.fatal


async def test_messages_keep_a_standby_waiting() -> None:
    h = Harness()
    h.loop.start()
    for _ in range(20):
        h.conn.deliver(b"anything")
        await asyncio.sleep(0.01)
    assert h.lock_calls == 0 and h.loop.heartbeats_seen == 20
    await asyncio.wait_for(h.activated.wait(), 5)
    await h.loop.stop()


async def test_refused_lock_keeps_standing_by() -> None:
    h = Harness(locked=False)
    h.loop.start()
    await until(lambda: h.lock_calls >= 3)
    assert not h.activated.is_set() and h.states == [ServerState.FT_STANDBY]
    # rate-limited: at most one line within the first second
    no_lock = [t for _, t in h.log.lines if t.startswith("ft: unable to get store lock")]
    assert len(no_lock) == 1
    await h.loop.stop()


async def test_an_older_active_heard_is_fatal() -> None:
    h = Harness()
    h.loop.start()
    await asyncio.wait_for(h.activated.wait(), 5)
    h.conn.deliver(encode_heartbeat(PEER, h.loop.activation_ns - 1))
    assert h.fatal == [f'ft: serverID "{PEER}" claims to be active, aborting']
    sent = len(h.conn.sent)
    await asyncio.sleep(0.1)
    assert len(h.conn.sent) == sent  # no heartbeat after stepping down
    await h.loop.stop()


async def test_lock_check_errors_are_survived_other_failures_are_not() -> None:
    h = Harness()
    h.owned = StoreError("sql: connection refused")
    h.loop.start()
    await asyncio.wait_for(h.activated.wait(), 5)
    await until(lambda: h.checks >= 3)
    beats = len(h.conn.sent)
    await until(lambda: len(h.conn.sent) > beats)  # still heartbeating
    assert ("error", "ft: unable to check the store lock: sql: connection refused") in h.log.lines
    assert not h.fatal
    h.owned = RuntimeError("boom")
    await until(lambda: bool(h.fatal))
    assert h.fatal == ["ft: boom"]
    await h.loop.stop()


async def test_store_noticing_it_was_deposed_stops_at_once_from_any_thread() -> None:
    h = Harness()
    h.loop.start()
    await asyncio.wait_for(h.activated.wait(), 5)
    t = threading.Thread(target=h.loop.notice_lock_lost)
    t.start()
    t.join()
    await until(lambda: bool(h.fatal))
    assert h.fatal == ["ft: lost store lock, aborting"]
    await h.loop.stop()


async def test_failed_activation_is_fatal_and_reported_failed() -> None:
    h = Harness()
    h.activate_error = StoreError('cluster ID "cid" does not match recovered value of "x"')
    h.loop.start()
    await until(lambda: bool(h.fatal))
    assert h.fatal == [
        'ft: unable to activate: cluster ID "cid" does not match recovered value of "x"'
    ]
    assert h.states[-1] == ServerState.FAILED
    await h.loop.stop()
