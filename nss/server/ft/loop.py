"""The thin asyncio driver of the FT machine (``machine.py``).

It turns the world into events -- messages on ``_STAN.ft.<cid>.<group>``,
the one timer, the answers of the store's lock calls -- feeds each to the
machine the moment it happens, logs the decision's line and carries out
its actions. Nothing here decides anything: what a message or a failed
lock call means is the machine's business, so it is unit-tested there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from nss.nats.connection import NatsError
from nss.server.ft.machine import (
    Action,
    Activate,
    ActivationFailed,
    ArmTimer,
    CancelTimer,
    CheckLock,
    Crashed,
    Event,
    Fatal,
    FTConfig,
    FTMachine,
    LockAcquired,
    LockCheckError,
    LockError,
    LockLost,
    LockOwned,
    LockRefused,
    Message,
    SendHeartbeat,
    Start,
    Stop,
    TimerFired,
    TryLock,
)
from nss.server.state import ServerState
from nss.stores.base import StoreError


class FTConnection(Protocol):
    """What the loop needs of a NATS connection (a fake one in tests)."""

    def subscribe(self, subject: str, cb: Callable[[str, str, bytes], None]) -> int: ...

    def unsubscribe(self, sid: int) -> None: ...

    def publish(self, subject: str, payload: bytes) -> None: ...


class FTLoop:
    """Drives standby -> active; ``activate`` is the server's start-serving.

    ``try_lock`` returns True (we own the store), False (someone else does)
    or raises (store unreachable: the machine logs it and stands by).
    ``check_lock`` returns whether the active still owns the store, raising
    StoreError when it could not tell. ``on_state`` hears every change of
    the reported server state; ``fatal`` is told why the process must stop.
    """

    def __init__(
        self,
        conn: FTConnection,
        cluster_id: str,
        group: str,
        server_id: str,
        *,
        hb_interval: float,
        missed_interval: float,
        lock_decides: bool = False,
        try_lock: Callable[[], Awaitable[bool]],
        check_lock: Callable[[], Awaitable[bool]],
        activate: Callable[[], Awaitable[None]],
        fatal: Callable[[str], None],
        log: Any,
        on_state: Callable[[ServerState], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.conn = conn
        self.subject = f"_STAN.ft.{cluster_id}.{group}"
        self.machine = FTMachine(FTConfig(server_id, hb_interval, missed_interval, lock_decides))
        self._try_lock = try_lock
        self._check_lock = check_lock
        self._activate = activate
        self._fatal = fatal
        self._on_state = on_state
        self.log = log
        self._clock = clock
        self._wall_clock = wall_clock
        self._sid = 0
        self._reported: ServerState | None = None  # told to on_state last
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Event | None]] = set()
        self._activation: asyncio.Task[Event | None] | None = None

    @property
    def state(self) -> ServerState:
        return self.machine.state.server_state

    @property
    def heartbeats_seen(self) -> int:
        return self.machine.state.heartbeats_seen

    @property
    def activation_ns(self) -> int:
        return self.machine.state.activation_ns

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._sid = self.conn.subscribe(self.subject, self._on_msg)
        self.feed(Start())

    async def stop(self) -> None:
        if self._sid:
            self.conn.unsubscribe(self._sid)
            self._sid = 0
        self.feed(Stop())
        me = asyncio.current_task()
        waits = []
        for t in list(self._tasks):
            if t is me:
                continue
            t.cancel()
            # recovery is left to unwind by itself, as the server shuts down
            if t is not self._activation:
                waits.append(t)
        await asyncio.gather(*waits, return_exceptions=True)

    def notice_lock_lost(self, reason: str = "") -> None:
        """The store found itself deposed (its lock's ``on_lost`` hook): stop
        now rather than at the next lock check. Safe from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self.feed, LockLost(reason))
        except RuntimeError:  # the loop closed meanwhile: nothing to stop
            pass

    # ------------------------------------------------------------ events
    def _on_msg(self, _subject: str, _reply: str, payload: bytes) -> None:
        self.feed(Message(payload))

    def feed(self, event: Event) -> None:
        """One step: decide, log, report the state, act."""
        d = self.machine.decide(event, self._clock())
        if d.log is not None:
            getattr(self.log, d.log.level)(d.log.text)
        if d.state.server_state is not self._reported:
            self._reported = d.state.server_state
            if self._on_state is not None:
                self._on_state(self._reported)
        for action in d.actions:
            self._execute(action)

    # ------------------------------------------------------------ actions
    def _execute(self, action: Action) -> None:
        match action:
            case ArmTimer(delay):
                self._cancel_timer()
                assert self._loop is not None
                self._timer = self._loop.call_later(delay, self.feed, TimerFired())
            case CancelTimer():
                self._cancel_timer()
            case TryLock():
                self._spawn(self._lock_attempt())
            case CheckLock():
                self._spawn(self._lock_check())
            case Activate():
                self._activation = self._spawn(self._activation_run())
            case SendHeartbeat(payload):
                try:
                    self.conn.publish(self.subject, payload)
                except NatsError as e:
                    self.log.error(f"ft: unable to send heartbeat: {e}")
            case Fatal(reason):
                self._fatal(reason)
            case _:
                raise TypeError(f"not an FT action: {action!r}")

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _spawn(self, coro: Coroutine[Any, Any, Event | None]) -> asyncio.Task[Event | None]:
        """Run a store call; its answer comes back as the next event."""
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Event | None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        event = Crashed(str(exc)) if exc is not None else task.result()
        if event is not None:
            self.feed(event)

    async def _lock_attempt(self) -> Event:
        try:
            locked = await self._try_lock()
        except Exception as e:  # noqa: BLE001 - not fatal in standby (ft.md §4)
            return LockError(str(e))
        return LockAcquired(self._wall_clock()) if locked else LockRefused()

    async def _lock_check(self) -> Event:
        try:
            owned = await self._check_lock()
        except StoreError as e:
            return LockCheckError(str(e))
        return LockOwned() if owned else LockLost()

    async def _activation_run(self) -> Event | None:
        try:
            await self._activate()
        except Exception as e:  # noqa: BLE001 - any failure to serve ends the process
            return ActivationFailed(str(e))
        return None
