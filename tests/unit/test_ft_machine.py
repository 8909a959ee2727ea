"""The FT state machine stepped by hand: a fake clock, a fake store lock and
a fake NATS subject, no process and no socket.

Two kinds of tests: single transitions in tables (state + event -> state,
actions, log line), and whole stories -- a group of members sharing one lock
and one subject -- that assert what each member decided and logged.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field, replace

import pytest

from nss.pb import spb_pb2 as spb
from nss.server.ft.heartbeat import (
    decode_heartbeat,
    encode_heartbeat,
    go_time_marshal,
    go_time_unmarshal,
)
from nss.server.ft.machine import (
    CLAIM_EARLIER,
    Activate,
    ActivationFailed,
    ArmTimer,
    CancelTimer,
    CheckLock,
    Crashed,
    Decision,
    Event,
    Fatal,
    FTConfig,
    FTMachine,
    FTState,
    LockAcquired,
    LockCheckError,
    LockError,
    LockLost,
    LockOwned,
    LockRefused,
    LogLine,
    Message,
    Phase,
    SendHeartbeat,
    Start,
    Stop,
    TimerFired,
    TryLock,
    decide,
    jitter,
)
from nss.server.state import ServerState

ME = "MEMEMEMEMEMEMEMEMEMEME"
PEER = "PEERPEERPEERPEERPEERPE"
HB, MISSED = 1.0, 1.25
CFG = FTConfig(ME, HB, MISSED)
CFG_LEASE = FTConfig(ME, HB, MISSED, lock_decides=True)  # SQL: the lock names one owner
T0 = 1_700_000_000 * 10**9  # wall clock of the activation in the tables

STANDBY = "Starting in standby mode"
ACTIVE = "Server is active"
NO_LOCK = "ft: unable to get store lock at this time, going back to standby"
LOST = "ft: lost store lock, aborting"


def info(text: str) -> LogLine:
    return LogLine("info", text)


def error(text: str) -> LogLine:
    return LogLine("error", text)


def hb(server_id: str, activation_ns: int) -> Message:
    return Message(encode_heartbeat(server_id, activation_ns))


WAITING = FTState(phase=Phase.WAITING)
LOCKING = FTState(phase=Phase.LOCKING)
ACTIVE_ST = FTState(phase=Phase.ACTIVE, server_state=ServerState.FT_ACTIVE, activation_ns=T0)
CHECKING = replace(ACTIVE_ST, phase=Phase.CHECKING)
MY_HB = SendHeartbeat(encode_heartbeat(ME, T0))
BAD_TIME_HB = spb.CtrlMsg(
    MsgType=spb.CtrlMsg.FTHeartbeat, ServerID=PEER, Data=b"\x07"
).SerializeToString()


# ================================================================ transitions

TRANSITIONS = [
    # (name, state, event, phase, server state, actions, log[, config: CFG])
    ("start", FTState(), Start(), Phase.WAITING, "FT_STANDBY", (ArmTimer(MISSED),), info(STANDBY)),
    ("silence: try the lock", WAITING, TimerFired(), Phase.LOCKING, "FT_STANDBY", (TryLock(),),
     None),
    ("any message restarts the wait", WAITING, Message(b"\x00junk"), Phase.WAITING, "FT_STANDBY",
     (ArmTimer(MISSED),), None),
    ("a message during the attempt is dropped", LOCKING, hb(PEER, T0), Phase.LOCKING,
     "FT_STANDBY", (), None),
    ("stale timer during the attempt", LOCKING, TimerFired(), Phase.LOCKING, "FT_STANDBY", (),
     None),
    ("lock acquired", LOCKING, LockAcquired(T0), Phase.ACTIVE, "FT_ACTIVE",
     (MY_HB, Activate(), ArmTimer(HB)), info(ACTIVE)),
    ("lock refused", LOCKING, LockRefused(), Phase.WAITING, "FT_STANDBY", (ArmTimer(MISSED),),
     info(NO_LOCK)),
    ("lock error is not fatal", LOCKING, LockError("sql: connection refused"), Phase.WAITING,
     "FT_STANDBY", (ArmTimer(MISSED),),
     error("ft: error attempting to get the store lock: "
           "ft: fatal error getting the store lock: sql: connection refused")),
    ("a late lock answer is ignored", WAITING, LockAcquired(T0), Phase.WAITING, "FT_STANDBY", (),
     None),
    ("heartbeat time: check the lock first", ACTIVE_ST, TimerFired(), Phase.CHECKING, "FT_ACTIVE",
     (CheckLock(),), None),
    ("still the owner: heartbeat", CHECKING, LockOwned(), Phase.ACTIVE, "FT_ACTIVE",
     (MY_HB, ArmTimer(HB)), None),
    ("lock check says lost", CHECKING, LockLost(), Phase.DONE, "FT_ACTIVE",
     (CancelTimer(), Fatal(LOST)), None),
    ("store noticed it was deposed", ACTIVE_ST, LockLost(), Phase.DONE, "FT_ACTIVE",
     (CancelTimer(), Fatal(LOST)), None),
    ("a deposed store means nothing to a standby", WAITING, LockLost(), Phase.WAITING,
     "FT_STANDBY", (), None),
    ("lock check crashed", CHECKING, Crashed("boom"), Phase.DONE, "FT_ACTIVE",
     (CancelTimer(), Fatal("ft: boom")), None),
    ("own heartbeat is ignored", ACTIVE_ST, hb(ME, T0), Phase.ACTIVE, "FT_ACTIVE", (), None),
    ("noise is ignored by an active", ACTIVE_ST, Message(b"\xff\xff"), Phase.ACTIVE, "FT_ACTIVE",
     (), None),
    ("other control messages are ignored", ACTIVE_ST,
     Message(spb.CtrlMsg(MsgType=spb.CtrlMsg.SubUnsubscribe, ServerID=PEER).SerializeToString()),
     Phase.ACTIVE, "FT_ACTIVE", (), None),
    ("an older active is heard: step down", ACTIVE_ST, hb(PEER, T0 - 1), Phase.DONE, "FT_ACTIVE",
     (CancelTimer(), Fatal(f'ft: serverID "{PEER}" claims to be active, aborting')), None),
    ("a younger active is heard: check and heartbeat now", ACTIVE_ST, hb(PEER, T0 + 1),
     Phase.CHECKING, "FT_ACTIVE", (CheckLock(),),
     error(f'ft: serverID "{PEER}" claims to be active')),
    ("an older active is heard by an SQL active: the lock decides", ACTIVE_ST,
     hb(PEER, T0 - 1), Phase.CHECKING, "FT_ACTIVE", (CheckLock(),),
     error(CLAIM_EARLIER.format(PEER)), CFG_LEASE),
    ("same activation time: neither steps down", ACTIVE_ST, hb(PEER, T0), Phase.CHECKING,
     "FT_ACTIVE", (CheckLock(),), error(f'ft: serverID "{PEER}" claims to be active')),
    ("a claim during a check: the check's heartbeat answers it", CHECKING, hb(PEER, T0 + 1),
     Phase.CHECKING, "FT_ACTIVE", (), error(f'ft: serverID "{PEER}" claims to be active')),
    ("bad activation time", ACTIVE_ST, Message(BAD_TIME_HB),
     Phase.CHECKING, "FT_ACTIVE", (CheckLock(),),
     error("Error decoding activation time: Time.UnmarshalBinary: unsupported version")),
    ("activation failed", ACTIVE_ST, ActivationFailed('cluster ID "a" does not match'), Phase.DONE,
     "FAILED", (CancelTimer(), Fatal('ft: unable to activate: cluster ID "a" does not match')),
     None),
    ("stop while standing by", WAITING, Stop(), Phase.DONE, "SHUTDOWN", (CancelTimer(),), None),
    ("stop while active", CHECKING, Stop(), Phase.DONE, "SHUTDOWN", (CancelTimer(),), None),
]  # fmt: skip


@pytest.mark.parametrize(
    "state, event, phase, server_state, actions, log, config",
    [(*t[1:7], t[7] if len(t) > 7 else CFG) for t in TRANSITIONS],
    ids=[t[0] for t in TRANSITIONS],
)
def test_transition(
    state: FTState,
    event: Event,
    phase: Phase,
    server_state: str,
    actions: tuple[object, ...],
    log: LogLine | None,
    config: FTConfig,
) -> None:
    d = decide(config, state, event, 100.0)
    assert (d.state.phase, d.state.server_state, d.actions, d.log) == (
        phase,
        server_state,
        actions,
        log,
    )


@pytest.mark.parametrize(
    "event",
    [Start(), TimerFired(), hb(PEER, 0), LockAcquired(T0), LockOwned(), LockLost(), Stop()],
    ids=lambda e: type(e).__name__,
)
def test_nothing_happens_after_the_end(event: Event) -> None:
    done = replace(ACTIVE_ST, phase=Phase.DONE)
    assert decide(CFG, done, event, 0.0) == Decision(done)


def test_heartbeats_seen_counts_what_a_member_hears_of_others() -> None:
    m = FTMachine(CFG, WAITING)
    m.decide(Message(b"anything"), 0.0)
    m.decide(hb(PEER, T0), 0.0)
    assert m.state.heartbeats_seen == 2
    m = FTMachine(CFG, ACTIVE_ST)
    m.decide(hb(ME, T0), 0.0)  # its own: not counted
    m.decide(Message(b"\xff"), 0.0)  # noise: not counted
    m.decide(hb(PEER, T0 + 5), 0.0)
    assert m.state.heartbeats_seen == 1


# ================================================================ lock policies


def test_lock_refused_log_backs_off_doubling_to_a_minute() -> None:
    """Refused every missed interval for ten minutes: the line comes after
    1, 2, 4 ... 32, then every 60 s."""
    m = FTMachine(CFG, WAITING)
    now, logged = 0.0, []
    while now < 600:
        m.decide(TimerFired(), now)
        d = m.decide(LockRefused(), now)
        assert d.actions == (ArmTimer(MISSED),)
        if d.log is not None:
            assert d.log == info(NO_LOCK)
            logged.append(now)
        now += MISSED
    gaps = [b - a for a, b in zip(logged, logged[1:], strict=False)]
    quiet = [1, 2, 4, 8, 16, 32] + [60] * (len(gaps) - 6)
    assert logged[0] == 0.0 and len(gaps) > 8
    # each gap is the quiet period, rounded up to the next lock attempt
    assert all(q <= gap < q + MISSED for gap, q in zip(gaps, quiet, strict=True)), gaps


def test_lock_check_errors_keep_serving_and_report_sparingly() -> None:
    """The store cannot be reached for the lock check (database restart):
    the active keeps heartbeating, says so on the 1st and every 30th
    failure, and once when the check works again."""
    m = FTMachine(CFG, ACTIVE_ST)
    logs = []
    for i in range(61):
        m.decide(TimerFired(), float(i))
        d = m.decide(LockCheckError("sql: connection refused"), float(i))
        assert d.actions == (MY_HB, ArmTimer(HB))
        assert d.state.phase is Phase.ACTIVE
        logs.append(d.log)
    assert [i + 1 for i, line in enumerate(logs) if line is not None] == [1, 30, 60]
    assert logs[0] == error("ft: unable to check the store lock: sql: connection refused")
    m.decide(TimerFired(), 61.0)
    d = m.decide(LockOwned(), 61.0)
    assert d.log == info("ft: store lock checked again, still the owner")
    assert d.state.check_errors == 0
    m.decide(TimerFired(), 62.0)
    assert m.decide(LockOwned(), 62.0).log is None  # said once only
    # a lost lock after errors is still the end
    m.decide(TimerFired(), 63.0)
    m.decide(LockCheckError("x"), 63.0)
    m.decide(TimerFired(), 64.0)
    assert m.decide(LockLost(), 64.0).actions == (CancelTimer(), Fatal(LOST))


# ================================================================ stories


class FakeLock:
    """The store lock shared by a group: owned by at most one member."""

    def __init__(self) -> None:
        self.owner: str | None = None
        self.error = ""  # when set, every call fails with it (database down)

    def attempt(self, who: str, wall_ns: int) -> Event:
        if self.error:
            return LockError(self.error)
        if self.owner in (None, who):
            self.owner = who
            return LockAcquired(wall_ns)
        return LockRefused()

    def check(self, who: str) -> Event:
        if self.error:
            return LockCheckError(self.error)
        return LockOwned() if self.owner == who else LockLost()


@dataclass
class Member:
    name: str
    machine: FTMachine
    timer_at: float | None = None
    alive: bool = True
    log: list[tuple[float, LogLine]] = field(default_factory=list)
    fatal: str = ""
    activations: int = 0
    beats: int = 0

    def said(self, text: str) -> list[float]:
        return [t for t, line in self.log if line.text == text]


class Group:
    """Members on one subject and one lock, driven by a fake clock. Lock
    calls answer at once; messages arrive at once, to everyone alive."""

    def __init__(self, lock_decides: bool = False) -> None:
        self.lock_decides = lock_decides
        self.now = 0.0
        self.lock = FakeLock()
        self.members: list[Member] = []
        self._events: deque[tuple[Member, Event]] = deque()

    def join(self, name: str) -> Member:
        sid = (name * 22)[:22]
        m = Member(name, FTMachine(FTConfig(sid, HB, MISSED, self.lock_decides)))
        self.members.append(m)
        self.send(m, Start())
        return m

    def send(self, m: Member, event: Event) -> None:
        self._events.append((m, event))
        while self._events:
            who, ev = self._events.popleft()
            if who.alive:
                self._step(who, ev)

    def _step(self, m: Member, event: Event) -> None:
        d = m.machine.decide(event, self.now)
        if d.log is not None:
            m.log.append((self.now, d.log))
        sid = m.machine.config.server_id
        for a in d.actions:
            match a:
                case ArmTimer(delay):
                    m.timer_at = self.now + delay
                case CancelTimer():
                    m.timer_at = None
                case TryLock():
                    wall = T0 + int(self.now * 1e9)
                    self._events.append((m, self.lock.attempt(sid, wall)))
                case CheckLock():
                    self._events.append((m, self.lock.check(sid)))
                case SendHeartbeat(payload):
                    m.beats += 1
                    for other in self.members:
                        self._events.append((other, Message(payload)))
                case Activate():
                    m.activations += 1
                case Fatal(reason):
                    m.fatal = reason
                    m.alive = False

    def run(self, seconds: float) -> None:
        """Fire every timer due in the next ``seconds``, in time order."""
        end = self.now + seconds
        while True:
            due = [m for m in self.members if m.alive and m.timer_at is not None]
            if not due:
                break
            m = min(due, key=lambda x: x.timer_at or 0.0)
            assert m.timer_at is not None
            if m.timer_at > end:
                break
            self.now, m.timer_at = m.timer_at, None
            self.send(m, TimerFired())
        self.now = end

    def stop(self, m: Member) -> None:
        """Graceful stop: the machine stops, the store releases the lock."""
        self.send(m, Stop())
        m.alive = False
        if self.lock.owner == m.machine.config.server_id:
            self.lock.owner = None

    def kill(self, m: Member) -> None:
        """SIGKILL on a FILE store: the OS frees the POSIX lock."""
        m.alive = False
        if self.lock.owner == m.machine.config.server_id:
            self.lock.owner = None


def test_missed_heartbeats_first_member_takes_the_empty_store() -> None:
    g = Group()
    a = g.join("a")
    assert a.said(STANDBY) == [0.0]
    g.run(1.0)
    assert a.activations == 0  # not before a whole missed interval of silence
    g.run(0.5)
    assert a.said(ACTIVE) == [MISSED]
    assert a.activations == 1 and a.machine.state.server_state == "FT_ACTIVE"
    g.run(10)
    assert a.beats == 11  # one at activation, then one per interval
    assert [line for _, line in a.log] == [info(STANDBY), info(ACTIVE)]


def test_standby_stays_while_heartbeats_come_and_takes_over_after_a_crash() -> None:
    g = Group()
    a = g.join("a")
    g.run(2)
    b = g.join("b")
    g.run(30)
    assert b.machine.state.phase is Phase.WAITING
    assert b.said(ACTIVE) == [] and b.machine.state.heartbeats_seen >= 29
    crash = g.now
    g.kill(a)
    g.run(5)
    assert b.said(ACTIVE) and crash + MISSED - HB <= b.said(ACTIVE)[0] <= crash + MISSED
    assert b.activations == 1 and b.fatal == ""


def test_lock_refused_while_the_active_is_frozen_then_back_off() -> None:
    """The active is frozen (SIGSTOP) but keeps its FILE lock: the standby
    hears nothing, is refused the lock every missed interval and says so
    less and less often."""
    g = Group()
    a = g.join("a")
    g.run(2)
    b = g.join("b")
    g.run(3)
    a.alive = False  # frozen: silent, yet the lock stays its own
    g.run(120)
    assert b.said(ACTIVE) == [] and b.activations == 0
    t = b.said(NO_LOCK)
    gaps = [y - x for x, y in zip(t, t[1:], strict=False)]
    assert len(t) == 7  # not 96 times (every 1.25 s): after 1, 2, 4, ... 60 s
    assert gaps == sorted(gaps) and gaps[0] >= 1.0 and gaps[-1] >= 32


def test_graceful_hand_over() -> None:
    g = Group()
    a = g.join("a")
    g.run(2)
    b = g.join("b")
    g.run(5)
    beats = a.beats
    g.stop(a)
    assert a.machine.state.server_state == ServerState.SHUTDOWN and a.timer_at is None
    assert a.beats == beats and a.fatal == ""
    stopped = g.now
    g.run(3)
    assert b.said(ACTIVE) and b.said(ACTIVE)[0] <= stopped + MISSED
    assert not b.said(NO_LOCK)  # a released lock is taken at the first try


def test_an_older_active_is_heard_the_younger_steps_down() -> None:
    """Two actives (a broken lock let both in): the one activated later
    aborts as soon as it hears the other; the earlier one only logs."""
    g = Group()
    a = g.join("a")
    g.run(2)
    b = g.join("b")
    g.lock.owner = None  # the lock forgets its owner (NFS lease expiry)
    g.lock.attempt = lambda who, wall: LockAcquired(wall)  # type: ignore[method-assign]
    g.lock.check = lambda who: LockOwned()  # type: ignore[method-assign]
    a.alive = False
    g.run(MISSED + 0.01)  # a is silent long enough: b activates too
    assert b.said(ACTIVE)
    # a wakes up; b's heartbeat (due 1 s after its activation) comes first
    a.alive, a.timer_at = True, b.said(ACTIVE)[0] + HB + 0.1
    g.run(2)
    claim = f'ft: serverID "{b.machine.config.server_id}" claims to be active'
    assert a.said(claim) == [b.said(ACTIVE)[0] + HB]
    assert a.fatal == "" and a.alive
    assert b.fatal == f'ft: serverID "{a.machine.config.server_id}" claims to be active, aborting'
    assert not b.alive and b.said(claim.replace(b.machine.config.server_id, "a" * 22)) == []


def test_sql_deposed_active_wakes_up_and_its_successor_stays() -> None:
    """SQL: a froze, b stole the lease row. a wakes up and its first check
    fails (the database ended its frozen session), so it beats once more as
    an active. Go's rule would stop b, the later activation, and a stops at
    its next check anyway: nobody serves. The lease row names b, so b checks
    it and stays; a stops."""
    g = Group(lock_decides=True)
    a = g.join("a")
    g.run(2)
    b = g.join("b")
    a_id = a.machine.config.server_id
    a.alive = False
    g.lock.owner = None  # the tick stood still for the steal window
    g.run(MISSED + 0.01)
    assert b.said(ACTIVE)
    check = g.lock.check
    ended: list[str] = []

    def first_check_of_a_fails(who: str) -> Event:
        if who == a_id and not ended:
            ended.append(who)
            return LockCheckError("sql: server closed the connection unexpectedly")
        return check(who)

    g.lock.check = first_check_of_a_fails  # type: ignore[method-assign]
    a.alive, a.timer_at = True, g.now + 0.01
    g.run(3)
    assert ended and a.fatal == LOST and not a.alive
    assert b.said(CLAIM_EARLIER.format(a_id)) and b.alive and b.fatal == ""
    assert b.activations == 1


def test_lock_check_errors_then_database_back() -> None:
    g = Group()
    a = g.join("a")
    g.run(2)
    g.lock.error = "sql: connection refused"
    g.run(40)
    assert a.alive and a.fatal == ""
    assert len(a.said("ft: unable to check the store lock: sql: connection refused")) == 2
    g.lock.error = ""
    g.run(2)
    assert len(a.said("ft: store lock checked again, still the owner")) == 1


def test_lock_errors_keep_a_standby_waiting() -> None:
    g = Group()
    g.lock.error = "sql: connection refused"
    a = g.join("a")
    g.run(5)
    err = (
        "ft: error attempting to get the store lock: "
        "ft: fatal error getting the store lock: sql: connection refused"
    )
    assert len(a.said(err)) == 4 and a.activations == 0
    g.lock.error = ""
    g.run(1.3)
    assert a.said(ACTIVE)


def test_lock_stolen_from_a_frozen_sql_active() -> None:
    """SQL: a frozen active's lease is stolen; when it wakes up its next
    check finds another owner and it stops without another heartbeat."""
    g = Group()
    a = g.join("a")
    g.run(2)
    b = g.join("b")
    g.run(2)
    a.alive = False
    g.lock.owner = None  # the lease expired and the standby steals it
    g.run(2)
    assert b.said(ACTIVE)
    a.alive = True
    beats = a.beats
    g.run(1.1)
    assert a.fatal == LOST and a.beats == beats


# ================================================================ encodings


def test_heartbeat_round_trip_and_go_time_format() -> None:
    ns = 1704164645_000000006  # 2024-01-02T03:04:05.000000006Z (ft.md §6.1)
    assert go_time_marshal(ns).hex() == "010000000edd25742500000006ffff"
    assert go_time_unmarshal(bytes.fromhex("010000000edd25742500000006" + "0000")) == ns
    hb_ = decode_heartbeat(encode_heartbeat(ME, ns))
    assert hb_ is not None and hb_.server_id == ME and go_time_unmarshal(hb_.data) == ns
    assert decode_heartbeat(b"\xff\xff") is None
    with pytest.raises(ValueError, match="invalid length"):
        go_time_unmarshal(b"\x01\x00")


def test_jitter_stays_within_ten_percent() -> None:
    rng = random.Random(7)
    values = [jitter(1.0, rng) for _ in range(1000)]
    assert all(0.9 < v < 1.1 for v in values)
    assert min(values) < 0.95 and max(values) > 1.05


def test_lock_lost_with_the_stores_reason_says_it() -> None:
    """The store can tell why it stopped (the database lost commits after a
    fail-over): the fatal decision carries that, after the usual sentence."""
    m = FTMachine(CFG, ACTIVE_ST)
    why = "sql: the database lost commits of this server (StoreLock tick 3, ...)"
    d = m.decide(LockLost(why), 10.0)
    assert d.actions == (CancelTimer(), Fatal(f"{LOST}: {why}"))
    assert d.state.phase is Phase.DONE
