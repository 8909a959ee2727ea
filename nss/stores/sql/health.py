"""Whether the SQL store's database takes writes now, why not, since when,
and where the writes go: the state behind ``check_writable`` and the log
lines operators follow through a database outage or fail-over.

Two ways to become unavailable:

* a statement fails (connection lost, server read-only ...): ``lost``; the
  store reconnects in the background and calls ``restored``;
* a commit is not confirmed within ``COMMIT_STALL`` (``watch``): the
  database holds it, e.g. a primary whose synchronous standby is gone. The
  store refuses writes meanwhile, so publishers get error PubAcks instead
  of waiting behind it, and on PostgreSQL ``explain_wait`` says what the
  commit waits for; ``confirmed`` ends it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import TextClause

from nss.log import get_logger
from nss.stores.base import StoreError

_log = get_logger()

# a commit not confirmed within this time makes the store refuse writes
# until it is
COMMIT_STALL = 2.0

# what a stalled backend (and those blocking it) wait for: (type, event)
Waits = list[tuple[str, str]]


def pg_waits(engine: Engine, stmt: TextClause, pid: int) -> Waits:
    """``pg_stat_activity`` on backend ``pid`` and those blocking it (a
    thread: it is a round trip)."""
    with engine.connect() as c:
        rows = c.execute(stmt, {"pid": pid}).all()
    return [(r[0] or "", r[1] or "") for r in rows]


def explain_wait(waits: Waits) -> str:
    """Why a commit is held, from ``pg_stat_activity`` rows: the
    committing backend first, then the ones that block it."""
    if any(event == "SyncRep" for _, event in waits):
        # the commit itself, or a transaction holding a row it needs
        return (
            "the database waits for a synchronous standby to confirm it (wait_event "
            "SyncRep): no standby named in synchronous_standby_names is connected"
        )
    kind, event = waits[0]
    return f"its session waits on {kind or 'nothing'}/{event or 'nothing'}"


class Health:
    """The store's database, as the store last found it."""

    def __init__(
        self,
        diagnose: Callable[[int], Waits] | None,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self._ok = True
        self._on_change = on_change
        self.last_error = ""
        self.stalled = False
        self.writer_pid = 0  # PostgreSQL backend of the writer's connection
        self._diagnose = diagnose
        self._lost_at = 0.0
        self._server = ""  # host:port that took the last commit
        self._reached_logged = ""

    @property
    def ok(self) -> bool:
        return self._ok

    @ok.setter
    def ok(self, value: bool) -> None:
        if value is not self._ok:
            self._ok = value
            if self._on_change is not None:
                self._on_change(value)

    def check(self) -> None:
        """StoreError while the database takes no writes."""
        if not self._ok:
            raise StoreError(f"sql: database unavailable: {self.last_error}")

    def lost(self, error: str) -> None:
        """A statement failed for want of a usable database."""
        if self.ok or self.stalled:
            self.stalled = False
            self._lost_at = time.monotonic()
            _log.error(f"SQL store: database error, retrying in the background: {error}")
        self.ok = False
        self.last_error = error

    def restored(self) -> None:
        self.ok = True
        _log.info(
            "SQL store: database connection restored, writes resumed "
            f"{time.monotonic() - self._lost_at:.2f} s after the database was lost"
        )

    # ------------------------------------------------------------ stalls
    async def watch(self, commit: asyncio.Future[None]) -> None:
        """Await a commit, and notice when it takes too long."""
        done, _ = await asyncio.wait({commit}, timeout=COMMIT_STALL)
        if not done:
            self._stall_started()
        await commit

    def confirmed(self, reconnecting: bool) -> None:
        """The commit went through: a stall is over (when reconnecting,
        ``restored`` says so instead)."""
        if not self.stalled:
            return
        self.stalled = False
        if not reconnecting:
            self.ok = True
            _log.info(
                "SQL store: the stalled commit was confirmed, writes resumed "
                f"{time.monotonic() - self._lost_at:.2f} s after it started"
            )

    def _stall_started(self) -> None:
        self.stalled = True
        if self.ok:
            self.ok = False
            self._lost_at = time.monotonic() - COMMIT_STALL
        self.last_error = f"a commit has not been confirmed for {COMMIT_STALL:g} s"
        _log.error(f"SQL store: {self.last_error}, refusing writes until it is")
        if self._diagnose is not None and self.writer_pid:
            asyncio.get_running_loop().create_task(self._explain(self.writer_pid))

    async def _explain(self, pid: int) -> None:
        assert self._diagnose is not None
        try:
            waits = await asyncio.to_thread(self._diagnose, pid)
        except Exception as e:  # noqa: BLE001 - a diagnosis only
            _log.error(f"SQL store: unable to tell what the commit waits for: {e}")
            return
        if not waits or not self.stalled:
            return
        why = explain_wait(waits)
        self.last_error = f"a commit has not been confirmed: {why}"
        _log.error(f"SQL store: the commit is stalled: {why}")

    # ------------------------------------------------------------ where
    def committed_on(self, where: str) -> None:
        """The server that took a commit (writer thread)."""
        self._server = self._reached_logged = where

    def knows_server(self) -> bool:
        return bool(self._server)

    def reached(self, where: str, lease_checked: bool) -> None:
        """A reconnect got to a writable server (and, in FT, found the
        StoreLock row there in order): said once per server."""
        if where == self._reached_logged:
            return
        self._reached_logged = where
        changed = self._server and where != self._server
        what = f"{where} (was {self._server})" if changed else where
        lease = ", StoreLock still owned, no commit missing" if lease_checked else ""
        _log.info(f"SQL store: reached a writable database at {what}{lease}")
