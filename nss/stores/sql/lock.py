"""The SQL store's ``StoreLock``: the ``StoreLock`` lease row (stores.md §4.10)."""

from __future__ import annotations

import math
import threading
import time

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from nss.log import get_logger
from nss.nuid import NUID
from nss.stores.base import StoreError
from nss.stores.lock import StoreLock
from nss.stores.sql.db import err_text, error_code
from nss.stores.sql.statements import Statements

_log = get_logger()

ERR_LOCK_LOST = "sql: store lock lost, another server is the active one"
# how often a contender re-reads a foreign owner's tick while it waits
LOCK_CHECK_PERIOD = 0.5
# a lock wait ran out: PostgreSQL's lock_not_available (lock_timeout),
# MySQL's "lock wait timeout exceeded" (innodb_lock_wait_timeout)
_LOCK_NOT_AVAILABLE = "55P03"
_MYSQL_LOCK_WAIT_TIMEOUT = 1205
# what _try answers when the row is locked by someone else's transaction
_BUSY = ("", -1)


def _lock_wait_ran_out(e: DBAPIError) -> bool:
    return error_code(e.orig) in (_LOCK_NOT_AVAILABLE, _MYSQL_LOCK_WAIT_TIMEOUT)


class LockLost(Exception):
    """A write transaction found the StoreLock row owned by another server."""

    reason = ERR_LOCK_LOST


class LostCommits(LockLost):
    """The StoreLock row still names this server but its tick is behind the
    last tick this server committed: the database (a promoted standby that
    had not received everything) lost commits, acknowledged messages among
    them. Serving on would hide the loss, so the server stops like a deposed
    one; whoever serves next recovers what the database really holds."""

    def __init__(self, found: int, committed: int) -> None:
        self.reason = (
            f"sql: the database lost commits of this server (StoreLock tick {found}, "
            f"this server committed tick {committed}): it was promoted from a standby "
            "that was not synchronous; stopping"
        )
        super().__init__(self.reason)


class SQLLock(StoreLock):
    """The ``StoreLock`` row (stores.md §4.10): a lease renewed by ticks,
    with fencing.

    The owner's ID and a tick it bumps at every ``check``; a contender
    steals the row once the tick stood still for ``steal_after``. Every
    write transaction of an FT store starts with ``fence``: if the row does
    not name this lock the transaction is rolled back and the store refuses
    writes from then on (``fenced``), so a deposed server never commits
    anything, even one that was merely slow to notice.

    The fence bumps the tick too, so the tick is a watermark of this
    server's commits: ``committed`` remembers the highest one the database
    confirmed. After a PostgreSQL fail-over the row must show at least that
    tick; a lower one means the new primary lacks commits this server made
    and acknowledged (an asynchronous standby was promoted), and the fence
    refuses it (``LostCommits``). With synchronous replication every
    confirmed commit is on the standby, so a promoted one always passes."""

    names_one_owner = True

    def __init__(self, engine: Engine, stmts: Statements, steal_after: float) -> None:
        self.id = NUID().next()
        self.steal_after = steal_after
        self.owner = False
        self.fenced = False
        self._engine = engine
        self._stmts = stmts
        self._mu = threading.Lock()
        self._released = False
        self._wm = threading.Lock()
        self._committed = 0  # highest tick a confirmed commit of ours wrote
        # a contender waits for the row no longer than the steal window
        # (MySQL: whole seconds, for the session): past that the owner is in
        # a long transaction, or frozen inside one until the database ends
        # its session (db.py)
        if stmts.postgres:
            wait = f"SET LOCAL lock_timeout = {max(1, round(steal_after * 1000))}"
        else:
            wait = f"SET SESSION innodb_lock_wait_timeout = {max(1, math.ceil(steal_after))}"
        self._wait_limit = text(wait)
        self._said_busy = False

    def _try(self, steal: tuple[str, int] | None = None) -> tuple[bool, str, int]:
        """One transaction of the protocol: (owned, previous id, previous
        tick). ``steal``: the (id, tick) watched standing still; the row is
        taken only if it still shows exactly that, so an owner that ticked
        in the meantime keeps it."""
        s = self._stmts
        with self._mu, self._engine.begin() as c:
            if not self.owner:
                c.execute(self._wait_limit)
            try:
                row = c.execute(s.lock_select).first()
            except DBAPIError as e:
                if not _lock_wait_ran_out(e):
                    raise
                self._busy()
                return (False, *_BUSY)
            self._said_busy = False
            prev_id, prev_tick = (row[0] or "", int(row[1] or 0)) if row is not None else ("", 0)
            stolen = steal is not None and steal == (prev_id, prev_tick)
            if row is None or stolen or prev_id == "" or prev_id == self.id:
                if prev_id == self.id and self.owner:
                    self._check_watermark(prev_tick)
                tick = 0 if stolen else prev_tick
                if row is None:
                    c.execute(s.lock_insert, {"id": self.id, "tick": tick + 1})
                else:
                    c.execute(s.lock_update, {"id": self.id, "tick": tick + 1})
            else:
                return False, prev_id, prev_tick
        self.committed(tick + 1, reset=prev_id != self.id or stolen)
        return True, prev_id, prev_tick

    def _busy(self) -> None:
        """The owner holds the row in a transaction that outlasted the
        steal window: said once per such wait, since it explains a standby
        that does not take over."""
        if not self._said_busy:
            self._said_busy = True
            _log.info(
                "SQL store: the StoreLock row is locked by a transaction of the active "
                f"server for over {self.steal_after:g}s; still waiting"
            )

    def acquire(self) -> bool:
        """Blocks up to ``steal_after`` while it watches another owner's tick.
        Once True, ``check`` must run at every FT heartbeat interval."""
        if self._released:
            return False
        if self.owner:
            return True
        try:
            ok, lid, tick = self._try()
            if not ok and (lid, tick) != _BUSY:
                # Steal only after the owner's tick stood still for the whole
                # window: a live owner refreshes at every FT heartbeat
                # (1 s by default, Go and nss alike), well inside the default
                # 1.5 s. Go waits 3 x 1.5 s; fencing keeps a faster steal
                # safe even against an owner that was merely slow.
                deadline = time.monotonic() + self.steal_after
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    time.sleep(min(LOCK_CHECK_PERIOD, left))
                    ok, nid, ntick = self._try()
                    if ok:
                        break
                    if nid != lid or ntick != tick:
                        return False  # the owner is alive (or busy: unknown)
                if not ok:
                    ok, _, _ = self._try(steal=(lid, tick))
        except SQLAlchemyError as e:
            raise StoreError(f"sql: {err_text(e)}") from e
        if ok:
            self.owner = True
            self.fenced = False
        return ok

    def check(self) -> bool:
        """Refresh the lease (tick + 1). False: another server owns the row
        (Go panics "lost store lock, aborting"), or the database lost
        commits of ours (``LostCommits``); the store is fenced from then on.
        StoreError: the database could not be reached; unlike Go (which
        aborts after three), the FT machine keeps serving: a standby may
        steal the lock once the tick stands still, and fencing then keeps
        this store from committing anything."""
        if not self.owner:
            return False
        try:
            ok, _, _ = self._try()
        except LockLost as e:
            self.lost(e.reason)
            return False
        except SQLAlchemyError as e:
            raise StoreError(f"sql: {err_text(e)}") from e
        if not ok:
            self.lost()
        return ok

    def fence(self, conn: Connection) -> int:
        """First statement of a write transaction: bump the tick of the row
        that names this server, and return the new tick (``committed`` once
        the transaction is). The row stays locked until commit, so a steal
        (an UPDATE of the row) waits for a commit in progress and any later
        commit finds the new owner."""
        if not self.owner:
            raise LockLost()
        s = self._stmts
        if s.postgres:
            row = conn.execute(s.lock_bump, {"id": self.id}).first()
            tick = None if row is None else int(row[0])
        else:
            row = conn.execute(s.lock_select).first()
            tick = None
            if row is not None and row[0] == self.id:
                tick = int(row[1] or 0) + 1
                conn.execute(s.lock_set_tick, {"id": self.id, "tick": tick})
        if tick is None:
            raise LockLost()
        self._check_watermark(tick - 1)
        return tick

    def verify(self, conn: Connection) -> int:
        """Read-only: does the row (of a database just reconnected to,
        maybe a promoted standby) still name this server, with every commit
        of ours? The tick found; LockLost / LostCommits otherwise."""
        row = conn.execute(self._stmts.lock_peek).first()
        if row is None or row[0] != self.id or not self.owner:
            raise LockLost()
        tick = int(row[1] or 0)
        self._check_watermark(tick)
        return tick

    def committed(self, tick: int, reset: bool = False) -> None:
        """A transaction that wrote ``tick`` is committed (``reset``: the
        first one of a new ownership)."""
        with self._wm:
            self._committed = tick if reset else max(self._committed, tick)

    def _check_watermark(self, found: int) -> None:
        with self._wm:
            committed = self._committed
        if found < committed:
            raise LostCommits(found, committed)

    def lost(self, reason: str = ERR_LOCK_LOST) -> None:
        """Another server owns the store (or the database lost our
        commits): refuse writes from now on; the first time, log why and
        tell ``on_lost``."""
        first = not self.fenced
        self.fenced = True
        self.owner = False
        if first:
            self.lost_reason = reason
            _log.error("SQL store: " + reason)
            cb = self.on_lost
            if cb is not None:
                cb()

    def release(self) -> None:
        """Clear the row (the next server acquires at once); the store is
        closing, so the lock is never acquired again."""
        self._released = True
        if not self.owner:
            return
        try:
            with self._mu, self._engine.begin() as c:
                c.execute(self._stmts.lock_release, {"id": self.id})
        except SQLAlchemyError as e:
            raise StoreError(err_text(e)) from e
        self.owner = False
