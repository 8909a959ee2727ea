"""Fault tolerance as a pure state machine (ft.md §3-§8).

Patroni's way: every input -- a message on the FT subject, a timer, the
result of a lock call -- is one event; :func:`decide` reads it with the
current :class:`FTState` and returns a :class:`Decision`: the next state,
the actions to carry out and the one log line that says what was decided.
No asyncio, no NATS, no clock of its own (``now`` is passed in), so the
unit tests step it with a fake clock and a fake lock and assert the very
sentences operators' alerts match on. ``loop.py`` is the thin driver that
turns NATS messages, timers and store calls into events and executes the
actions.

The rules, in short: a standby waits for a missed interval of silence on
the subject, then tries the store lock; refused or failing, it waits again.
With the lock it activates, heartbeats every interval and proves it still
owns the lock before each heartbeat. It stops (a ``Fatal`` action, the
process exits non-zero) when the lock is lost or when an active that was
activated earlier is heard (§7).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import NamedTuple

from nss.server.ft.heartbeat import decode_heartbeat, encode_heartbeat, go_time_unmarshal
from nss.server.state import ServerState

LOG_STANDBY = "Starting in standby mode"
LOG_ACTIVE = "Server is active"
LOG_NO_LOCK = "ft: unable to get store lock at this time, going back to standby"
LOG_LOCK_ERROR = (
    "ft: error attempting to get the store lock: ft: fatal error getting the store lock: "
)
LOG_CHECK_ERROR = "ft: unable to check the store lock: "
LOG_CHECK_BACK = "ft: store lock checked again, still the owner"
LOST_LOCK = "ft: lost store lock, aborting"
CLAIM_EARLIER = (
    'ft: serverID "{}" claims to be active since before this server; '
    "the store lock decides which one stays"
)

# "unable to get store lock" is logged at most once per quiet period, which
# starts at 1 s and doubles up to 1 min while the lock stays refused (Go).
NO_LOCK_QUIET_MIN = 1.0
NO_LOCK_QUIET_MAX = 60.0
# A store that cannot be reached for the lock check is reported on the
# first failure and then every 30th (about every 30 s), not every second.
CHECK_ERROR_LOG_EVERY = 30


def jitter(value: float, rng: random.Random | None = None) -> float:
    """Up to ±10 %, once per process, so members of a group do not tick in
    lock-step (the Go server does the same)."""
    r = rng or random
    off = value * r.random() * 0.1
    return value + off if r.random() < 0.5 else value - off


class Phase(Enum):
    """Where the machine is; finer than the :class:`ServerState` it reports,
    because a lock call in flight changes what an event means."""

    IDLE = "idle"  # created, not started
    WAITING = "waiting"  # standby, waiting for a missed interval of silence
    LOCKING = "locking"  # standby, a lock attempt in flight
    ACTIVE = "active"  # active, waiting for the next heartbeat time
    CHECKING = "checking"  # active, a lock check in flight
    DONE = "done"  # stopped or fatal: every later event is ignored


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class Start:
    """The FT subject is subscribed: stand by."""


@dataclass(frozen=True)
class Message:
    """Anything received on ``_STAN.ft.<cluster>.<group>``."""

    payload: bytes


@dataclass(frozen=True)
class TimerFired:
    """The last armed timer expired."""


@dataclass(frozen=True)
class LockAcquired:
    """The store lock is ours; ``wall_ns`` (wall clock, as Go compares
    activation times across hosts) becomes the activation time."""

    wall_ns: int


@dataclass(frozen=True)
class LockRefused:
    """Another server holds the store lock."""


@dataclass(frozen=True)
class LockError:
    """The lock attempt failed (e.g. database down): not fatal (§4)."""

    error: str


@dataclass(frozen=True)
class LockOwned:
    """The active's lock check: still the owner."""


@dataclass(frozen=True)
class LockCheckError:
    """The active's lock check could not reach the store."""

    error: str


@dataclass(frozen=True)
class LockLost:
    """Another server owns the store: the lock check said so, or the store
    found itself fenced while writing. ``reason``: the store's own words,
    when it gave some (e.g. the database lost commits after a fail-over)."""

    reason: str = ""


@dataclass(frozen=True)
class ActivationFailed:
    """Recovering the store or starting to serve failed after the lock."""

    error: str


@dataclass(frozen=True)
class Crashed:
    """A lock call failed in a way nobody planned for."""

    error: str


@dataclass(frozen=True)
class Stop:
    """The server shuts down."""


Event = (
    Start
    | Message
    | TimerFired
    | LockAcquired
    | LockRefused
    | LockError
    | LockOwned
    | LockCheckError
    | LockLost
    | ActivationFailed
    | Crashed
    | Stop
)

# ---------------------------------------------------------------- actions


@dataclass(frozen=True)
class ArmTimer:
    """(Re)start the one timer: a later TimerFired after ``delay`` s."""

    delay: float


@dataclass(frozen=True)
class CancelTimer:
    pass


@dataclass(frozen=True)
class TryLock:
    """Try the store lock; answer LockAcquired, LockRefused or LockError."""


@dataclass(frozen=True)
class CheckLock:
    """Prove the lock is still ours; answer LockOwned, LockLost or
    LockCheckError."""


@dataclass(frozen=True)
class Activate:
    """Recover the store and serve; answer ActivationFailed if that fails.
    Heartbeats and lock checks go on meanwhile: recovery may take a while."""


@dataclass(frozen=True)
class SendHeartbeat:
    payload: bytes


@dataclass(frozen=True)
class Fatal:
    """Stop serving without another write; the process exits non-zero and
    logs ``reason`` as fatal."""

    reason: str


Action = ArmTimer | CancelTimer | TryLock | CheckLock | Activate | SendHeartbeat | Fatal


# ---------------------------------------------------------------- decisions


class LogLine(NamedTuple):
    level: str  # "info" or "error"
    text: str


def info(text: str) -> LogLine:
    return LogLine("info", text)


def error(text: str) -> LogLine:
    return LogLine("error", text)


@dataclass(frozen=True)
class FTConfig:
    server_id: str
    hb_interval: float
    missed_interval: float
    # the store lock names one owner (``StoreLock.names_one_owner``): it,
    # not the activation times, settles two actives
    lock_decides: bool = False


@dataclass(frozen=True)
class FTState:
    """Everything the machine remembers between events (immutable: each
    decision returns the next one, so a test can hold any point of a story)."""

    phase: Phase = Phase.IDLE
    server_state: ServerState = ServerState.FT_STANDBY
    activation_ns: int = 0
    # messages heard on the subject (standby) / peer heartbeats (active)
    heartbeats_seen: int = 0
    check_errors: int = 0
    no_lock_log_at: float = 0.0
    no_lock_quiet: float = NO_LOCK_QUIET_MIN


@dataclass(frozen=True)
class Decision:
    state: FTState
    actions: tuple[Action, ...] = field(default=())
    log: LogLine | None = None


def decide(config: FTConfig, state: FTState, event: Event, now: float) -> Decision:
    """The whole FT policy: ``now`` is monotonic seconds (timers, log rate
    limits); events that need wall-clock time carry it."""
    if state.phase is Phase.DONE:
        return Decision(state)
    match event:
        case Start():
            return _start(config, state)
        case Message(payload):
            return _message(config, state, payload)
        case TimerFired():
            return _timer(state)
        case LockAcquired() | LockRefused() | LockError():
            return _lock_result(config, state, event, now)
        case LockOwned() | LockCheckError():
            return _check_result(config, state, event)
        case LockLost(reason):
            if not _is_active(state):
                return Decision(state)
            return _fatal(state, f"{LOST_LOCK}: {reason}" if reason else LOST_LOCK)
        case ActivationFailed(err):
            if not _is_active(state):
                return Decision(state)
            failed = replace(state, server_state=ServerState.FAILED)
            return _fatal(failed, f"ft: unable to activate: {err}")
        case Crashed(err):
            return _fatal(state, f"ft: {err}")
        case Stop():
            done = replace(state, phase=Phase.DONE, server_state=ServerState.SHUTDOWN)
            return Decision(done, (CancelTimer(),))
    raise TypeError(f"not an FT event: {event!r}")


class FTMachine:
    """:func:`decide` with its state kept: what the driver holds."""

    def __init__(self, config: FTConfig, state: FTState | None = None) -> None:
        self.config = config
        self.state = state or FTState()

    def decide(self, event: Event, now: float) -> Decision:
        d = decide(self.config, self.state, event, now)
        self.state = d.state
        return d


# ---------------------------------------------------------------- the rules


def _is_active(s: FTState) -> bool:
    return s.phase in (Phase.ACTIVE, Phase.CHECKING)


def _fatal(s: FTState, reason: str) -> Decision:
    return Decision(replace(s, phase=Phase.DONE), (CancelTimer(), Fatal(reason)))


def _start(c: FTConfig, s: FTState) -> Decision:
    if s.phase is not Phase.IDLE:
        return Decision(s)
    standby = replace(s, phase=Phase.WAITING, server_state=ServerState.FT_STANDBY)
    return Decision(standby, (ArmTimer(c.missed_interval),), info(LOG_STANDBY))


def _timer(s: FTState) -> Decision:
    # A timer that fires while a lock call is in flight is stale: the
    # call's answer arms the next one.
    if s.phase is Phase.WAITING:
        return Decision(replace(s, phase=Phase.LOCKING), (TryLock(),))
    if s.phase is Phase.ACTIVE:
        return Decision(replace(s, phase=Phase.CHECKING), (CheckLock(),))
    return Decision(s)


def _message(c: FTConfig, s: FTState, payload: bytes) -> Decision:
    if s.phase in (Phase.WAITING, Phase.LOCKING):
        # Any message restarts the wait, its content unread (§4); one heard
        # while the lock attempt is in flight is dropped, as in Go.
        heard = replace(s, heartbeats_seen=s.heartbeats_seen + 1)
        rearm = (ArmTimer(c.missed_interval),) if s.phase is Phase.WAITING else ()
        return Decision(heard, rearm)
    if not _is_active(s):
        return Decision(s)
    hb = decode_heartbeat(payload)
    if hb is None or hb.server_id == c.server_id:
        return Decision(s)  # noise, or our own heartbeat coming back
    s = replace(s, heartbeats_seen=s.heartbeats_seen + 1)
    try:
        peer_ns = go_time_unmarshal(hb.data)
    except ValueError as e:
        return _answer_claim(s, error(f"Error decoding activation time: {e}"))
    if peer_ns < s.activation_ns:
        if c.lock_decides:
            # Go's rule (below) aborts the rightful active when an owner
            # that froze, was deposed by a steal and woke up still beats
            # once before its own check fails: both stop, nobody serves.
            # A lock that names one owner settles it instead; the loser
            # finds out at its check.
            return _answer_claim(s, error(CLAIM_EARLIER.format(hb.server_id)))
        # Two actives: the later activation steps down (§7).
        return _fatal(s, f'ft: serverID "{hb.server_id}" claims to be active, aborting')
    return _answer_claim(s, error(f'ft: serverID "{hb.server_id}" claims to be active'))


def _answer_claim(s: FTState, log: LogLine) -> Decision:
    """Another server claims to be active: prove the lock and heartbeat at
    once (§6). A check already in flight ends with that heartbeat."""
    if s.phase is Phase.CHECKING:
        return Decision(s, (), log)
    return Decision(replace(s, phase=Phase.CHECKING), (CheckLock(),), log)


def _lock_result(
    c: FTConfig, s: FTState, e: LockAcquired | LockRefused | LockError, now: float
) -> Decision:
    if s.phase is not Phase.LOCKING:
        return Decision(s)
    waiting = replace(s, phase=Phase.WAITING)
    wait = (ArmTimer(c.missed_interval),)
    if isinstance(e, LockError):
        # e.g. the database is down: not fatal, stand by and try again (§4)
        return Decision(waiting, wait, error(LOG_LOCK_ERROR + e.error))
    if isinstance(e, LockRefused):
        if now < s.no_lock_log_at:
            return Decision(waiting, wait)
        quiet = replace(
            waiting,
            no_lock_log_at=now + s.no_lock_quiet,
            no_lock_quiet=min(s.no_lock_quiet * 2, NO_LOCK_QUIET_MAX),
        )
        return Decision(quiet, wait, info(LOG_NO_LOCK))
    active = replace(
        s, phase=Phase.ACTIVE, server_state=ServerState.FT_ACTIVE, activation_ns=e.wall_ns
    )
    return Decision(
        active,
        (SendHeartbeat(_heartbeat(c, active)), Activate(), ArmTimer(c.hb_interval)),
        info(LOG_ACTIVE),
    )


def _check_result(c: FTConfig, s: FTState, e: LockOwned | LockCheckError) -> Decision:
    """The store lock policy of an active (ft.md §8, with one difference).

    Go aborts after three failed refreshes in a row. nss keeps serving: the
    store answers writes with errors while the database is unreachable, a
    contender can only steal once the owner's tick stood still past the
    steal window, and the store's fencing stops this server the moment
    another one owns the lock. So an error is reported (first, then every
    30th) and the heartbeat goes on; the recovery is reported once."""
    if s.phase is not Phase.CHECKING:
        return Decision(s)
    if isinstance(e, LockOwned):
        log = info(LOG_CHECK_BACK) if s.check_errors else None
        owned = replace(s, phase=Phase.ACTIVE, check_errors=0)
        return Decision(owned, _beat(c, owned), log)
    n = s.check_errors + 1
    log = error(LOG_CHECK_ERROR + e.error) if n == 1 or n % CHECK_ERROR_LOG_EVERY == 0 else None
    failing = replace(s, phase=Phase.ACTIVE, check_errors=n)
    return Decision(failing, _beat(c, failing), log)


def _heartbeat(c: FTConfig, s: FTState) -> bytes:
    return encode_heartbeat(c.server_id, s.activation_ns)


def _beat(c: FTConfig, s: FTState) -> tuple[Action, ...]:
    return (SendHeartbeat(_heartbeat(c, s)), ArmTimer(c.hb_interval))
