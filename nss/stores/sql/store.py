"""SQL store (PostgreSQL, MySQL): the Go server's tables and row shapes.

A database written by nats-streaming-server v0.25.6 is served by nss and the
other way round (stores.md §4): whole MsgProtos in ``Messages.data``, JSON
arrays in ``SubsPending`` (caching mode) or one row per pending sequence
(``no_caching``), global subscription IDs from ``MAX(subid)``,
``Channels.maxseq`` for sequence continuity, ``ServerInfo.version = 1``.

How it fits the server's asyncio loop
-------------------------------------
The store API is synchronous except ``flush``; a database round trip on the
event loop for every publish or ack would stall everything. So:

* **Writes are journaled, then committed in one transaction** (``journal.py``).
  ``flush()`` — of any channel's MsgStore or SubStore, or of the Store —
  commits *everything* the store has journaled, for all channels, in ONE
  transaction run on a dedicated writer thread. The server flushes every
  touched channel after a batch: the first call commits the whole batch,
  the others find nothing left (but still wait for a commit in progress, so
  that no caller returns before its own writes are durable). Changes no
  server flush picks up (acks that unblock nothing, expiry) are committed
  ``IDLE_FLUSH_DELAY`` later. ``init`` is the one exception: it writes at
  once (the server calls ``init`` then ``recover`` again when channels
  exist without server info).
* **Reads are served from memory when possible** (``msgs.py``): recent
  messages stay in memory, misses read ahead on a separate autocommit
  connection (``read``, ``aread``).
* **A lost database does not lose anything acknowledged.** A failed commit
  keeps its batch (the next attempt re-runs it with idempotent inserts, in
  case the commit did happen) and marks the store unavailable: ``flush``,
  ``store``, ``create_channel``, ``create_sub`` and ``add_client`` then fail
  at once with StoreError (so publishers get error PubAcks instead of a
  server that hangs), and a background task reconnects with exponential
  backoff, commits the kept batch and makes the store available again.
* **Fencing (FT).** With ``ft=True`` every write transaction starts with
  ``SELECT id FROM StoreLock FOR SHARE``: if the row does not name this
  store's lock ID the transaction is rolled back and the store refuses all
  further writes. The share lock is held until commit, so a standby's steal
  (an UPDATE of that row) waits for an in-progress commit, and any commit
  attempted after the steal sees the new owner: a deposed active server can
  never commit. ``lock()`` hands out the ``SQLLock`` (the Go StoreLock
  protocol, stores.md §4.10, in ``lock.py``) the FT loop drives; its
  ``on_lost`` (the server sets it in FT mode) is called, from whichever
  thread noticed, the first time the store finds itself deposed, so the
  server stops at once.

``no_caching`` keeps the Go row shapes of that mode (one ``SubsPending`` row
per pending message, ``Subscriptions.lastsent`` on acks, one INSERT per
message); durability is the same in both modes since the server awaits
``flush`` before it acknowledges anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from nss.log import get_logger
from nss.options import ChannelLimits, SQLOptions, StoreLimits
from nss.pb import spb_pb2 as spb
from nss.stores.base import ChannelStore, RecoveredState, Store, StoreError
from nss.stores.crypto import attach
from nss.stores.sql.db import (
    backend_pid,
    err_text,
    is_disconnect,
    make_engines,
    server_address,
)
from nss.stores.sql.dsn import SQLTarget, parse_source
from nss.stores.sql.health import Health, pg_waits
from nss.stores.sql.journal import Batch, Journal, JournaledMsgs, JournaledSubs, Op, run_batch
from nss.stores.sql.lock import ERR_LOCK_LOST, LockLost, SQLLock
from nss.stores.sql.msgs import SQLMsgStore
from nss.stores.sql.purge import purge_channel
from nss.stores.sql.recovery import SQLRecovery
from nss.stores.sql.schema import check_schema
from nss.stores.sql.statements import SQL_VERSION, Statements
from nss.stores.sql.subs import SQLSubStore

_log = get_logger()

T = TypeVar("T")

# reconnect backoff; the maximum bounds how long a promoted standby (or a
# database back from a restart) waits before it is used
BACKOFF_MIN = 0.05
BACKOFF_MAX = 0.25
# journaled changes that no flush commits (acks that do not unblock a
# delivery, expiry, timers) are committed after this delay (Go: 1 s)
IDLE_FLUSH_DELAY = 0.2


class SQLStore(Store):
    """The SQL store. ``ft=True`` fences every write with the StoreLock row
    (see the module docstring); the FT loop drives the lock ``lock()`` hands
    out."""

    name = "SQL"

    def __init__(self, limits: StoreLimits, opts: SQLOptions, *, ft: bool = False) -> None:
        super().__init__(limits)
        self.opts = opts
        self.target: SQLTarget = parse_source(opts.driver, opts.source)
        self.postgres = self.target.postgres
        self.no_caching = opts.no_caching
        self.stmts = Statements(self.postgres)
        self.ft = ft
        self.max_sub_id = 0
        self._max_channel_id = 0
        self._journal = Journal(self.stmts)
        self._inflight = False
        self._flush_lock: asyncio.Lock | None = None
        self._idle_handle: asyncio.TimerHandle | None = None
        # health
        self._reconnect_task: asyncio.Task[None] | None = None
        self._purge_task: asyncio.Task[None] | None = None
        self._to_purge: list[int] = []
        self._closed = False
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="nss-sql-writer")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="nss-sql-reader")
        self._wengine, self._rengine = make_engines(
            self.target, opts.max_open_conns, opts.lock_steal_after if ft else 0
        )
        waits = partial(pg_waits, self._rengine, self.stmts.backend_wait)
        self._health = Health(waits if self.postgres else None, self._availability)
        self._lock = SQLLock(self._wengine, self.stmts, opts.lock_steal_after)
        try:
            with self._wengine.connect() as c:
                c.execute(self.stmts.ping)
                check_schema(c, self.postgres)
        except StoreError:
            self._dispose()
            raise
        except SQLAlchemyError as e:
            self._dispose()
            raise StoreError(f"sql: unable to open the database: {err_text(e)}") from e

    def _dispose(self, wait: bool = False) -> None:
        self._writer.shutdown(wait=wait)
        self._reader.shutdown(wait=wait)
        self._wengine.dispose()
        self._rengine.dispose()

    # ------------------------------------------------------------------ journal
    def journal(self, op: Op) -> None:
        self._journal.add(op)
        if self._idle_handle is None:
            self.schedule_idle_flush()

    def mark_msgs(self, ms: JournaledMsgs) -> None:
        self._journal.mark_msgs(ms)
        if self._idle_handle is None:
            self.schedule_idle_flush()

    def mark_subs(self, ss: JournaledSubs) -> None:
        self._journal.mark_subs(ss)
        if self._idle_handle is None:
            self.schedule_idle_flush()

    def discard_rows(self, ms: JournaledMsgs, first: int, last: int) -> None:
        self._journal.discard_rows(ms, first, last)

    def check_writable(self) -> None:
        """Fail fast (before anything is changed) while the database is
        unreachable, a commit stalled or this server was fenced off."""
        if self._lock.fenced:
            raise StoreError(self._lock.lost_reason or ERR_LOCK_LOST)
        self._health.check()

    def _availability(self, ok: bool) -> None:
        if self.on_availability is not None:
            self.on_availability(ok)

    def schedule_idle_flush(self) -> None:
        """Commit changes made outside a server batch (expiry, timers) soon,
        even if nothing else flushes."""
        if self._idle_handle is not None or self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._idle_handle = loop.call_later(IDLE_FLUSH_DELAY, self._idle_flush, loop)

    def _idle_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._idle_handle = None
        if self._closed or not self._health.ok:
            return

        async def run() -> None:
            try:
                await self.flush()
            except StoreError:
                pass

        loop.create_task(run())

    # ------------------------------------------------------------------ flush
    async def flush(self) -> None:
        """Commit everything journaled by this store, in one transaction."""
        if self._journal.idle() and not self._inflight:
            return
        await self._commit(force=False)

    async def _commit(self, force: bool) -> None:
        if self._flush_lock is None:
            self._flush_lock = asyncio.Lock()
        async with self._flush_lock:
            if self._lock.fenced:
                raise StoreError(ERR_LOCK_LOST)
            if not force:
                self._health.check()
            batch, retry = self._journal.take()
            if batch.empty():
                self._after_commit(batch)
                return
            self._inflight = True
            loop = asyncio.get_running_loop()
            try:
                run = loop.run_in_executor(self._writer, self._exec_batch, batch, retry)
                await self._health.watch(run)
            except LockLost as e:
                self._lock.lost(e.reason)
                raise StoreError(e.reason) from None
            except Exception as e:
                err = f"sql: unable to store: {err_text(e)}"
                self._journal.failed(batch, err)
                self._unhealthy(e)
                raise StoreError(err) from e
            finally:
                self._inflight = False
            self._health.confirmed(reconnecting=self._reconnect_task is not None)
            self._after_commit(batch)

    def _after_commit(self, batch: Batch) -> None:
        for ms, upto in batch.committed.items():
            ms.committed(upto)
        if self._to_purge and self._purge_task is None and not self._closed:
            self._purge_task = asyncio.get_running_loop().create_task(self._purge())

    def _exec_batch(self, batch: Batch, retry: bool) -> None:
        """Writer thread: run one batch in one transaction."""
        with self._wengine.begin() as conn:
            self._health.writer_pid = backend_pid(conn)
            tick = self._fence(conn)
            run_batch(
                conn, self.stmts, batch, retry, self.no_caching, self.opts.bulk_insert_limit
            )
            if not self._health.ok or not self._health.knows_server():
                self._health.committed_on(server_address(conn))
        if tick:
            self._lock.committed(tick)

    # ------------------------------------------------------------------ health
    def _unhealthy(self, e: BaseException) -> None:
        self._health.lost(err_text(e))
        if self._reconnect_task is None and not self._closed:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._reconnect_task = loop.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        """Reach a writable database again (``_probe``: in FT, with the
        StoreLock row still ours and no commit of ours missing, as a
        promoted standby might), commit what the failed batch(es) held, then
        accept writes again; every ``BACKOFF_MAX`` at most."""
        delay = BACKOFF_MIN
        loop = asyncio.get_running_loop()
        try:
            while not self._closed and not self._lock.fenced:
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                try:
                    where = await loop.run_in_executor(self._writer, self._probe)
                except LockLost as e:
                    self._lock.lost(e.reason)
                    return
                except Exception as e:
                    self._health.last_error = err_text(e)
                    continue
                self._health.reached(where, lease_checked=self.ft)
                try:
                    await self._commit(force=True)
                except StoreError as e:
                    self._health.last_error = str(e)
                    continue
                self._health.restored()
                return
        finally:
            self._reconnect_task = None

    def _probe(self) -> str:
        """Writer thread: a connection to a writable database (the pool's
        stale ones are replaced at checkout) and, in FT, the StoreLock
        check there. Where it got to (``host:port``)."""
        with self._wengine.connect() as c:
            c.execute(self.stmts.ping)
            if self.ft:
                self._lock.verify(c)
                c.rollback()
            return server_address(c)

    @property
    def healthy(self) -> bool:
        return self._health.ok

    def read(self, fn: Callable[[Connection], T]) -> T:
        """A synchronous read on the autocommit connection (loop thread)."""
        self._health.check()
        try:
            with self._rengine.connect() as c:
                return fn(c)
        except SQLAlchemyError as e:
            if is_disconnect(e):
                self._unhealthy(e)
            raise StoreError(f"sql: {err_text(e)}") from e

    async def aread(self, fn: Callable[[Connection], T]) -> T:
        """``read`` on the reader thread, for prefetching off the loop."""
        self._health.check()

        def run() -> T:
            with self._rengine.connect() as c:
                return fn(c)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._reader, run)
        except SQLAlchemyError as e:
            if is_disconnect(e):
                self._unhealthy(e)
            raise StoreError(f"sql: {err_text(e)}") from e

    # ------------------------------------------------------------------ Store API
    def init(self, info: spb.ServerInfo) -> None:
        """Write the server info at once (not journaled): the server calls
        ``init`` then ``recover`` again when channels exist without it, and
        that second recovery must see the row. Rare (start-up), so a
        synchronous statement is fine; any thread may call it."""
        stmts = self.stmts
        params = {"id": info.ClusterID, "proto": info.SerializeToString(), "version": SQL_VERSION}

        def op(conn: Connection, retry: bool) -> None:
            if conn.execute(stmts.update_server_info, params).rowcount == 0:
                conn.execute(stmts.add_server_info, params)

        b = Batch()
        b.ops.append(op)
        try:
            self._exec_batch(b, False)
        except LockLost as e:
            self._lock.lost(e.reason)
            raise StoreError(e.reason) from None
        except SQLAlchemyError as e:
            raise StoreError(f"sql: unable to store server info: {err_text(e)}") from e

    def _new_channel(self, name: str, limits: ChannelLimits) -> ChannelStore:
        self.check_writable()
        cid = self._max_channel_id + 1
        self._max_channel_id = cid
        s = self.stmts
        self.journal(
            (
                s.add_channel,
                {
                    "id": cid,
                    "name": name,
                    "maxmsgs": limits.max_msgs,
                    "maxbytes": limits.max_bytes,
                    "maxage": int(limits.max_age * 1e9),
                },
                s.add_channel_idem,
            )
        )
        return ChannelStore(
            name, SQLMsgStore(self, name, cid, limits), SQLSubStore(self, cid, limits)
        )

    def _drop_channel(self, cs: ChannelStore) -> None:
        ms = cs.msgs
        assert isinstance(ms, SQLMsgStore)
        ss = cs.subs
        assert isinstance(ss, SQLSubStore)
        ms.deleted = True
        ss.deleted = True
        self.journal((self.stmts.delete_channel_fast, {"id": ms.cid}, None))
        # the rows go in the background once the fast delete is committed
        self._to_purge.append(ms.cid)

    def add_client(self, info: spb.ClientInfo) -> None:
        self.check_writable()
        s = self.stmts
        params = {"id": info.ID, "hbinbox": info.HbInbox, "proto": info.SerializeToString()}
        # a row left by a previous connection of the same ID is replaced
        self.journal((s.delete_client, {"id": info.ID}, None))
        self.journal((s.add_client, params, s.add_client_idem))

    def delete_client(self, client_id: str) -> None:
        self.journal((self.stmts.delete_client, {"id": client_id}, None))

    async def close(self) -> None:
        if self._closed:
            return
        try:
            if self._health.ok and not self._lock.fenced:
                await self.flush()
        except StoreError as e:
            _log.error(f"SQL store: unable to flush on close: {e}")
        self._closed = True
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        for t in (self._reconnect_task, self._purge_task):
            if t is not None:
                t.cancel()
        if not self._journal.idle():
            _log.error("SQL store: closing with changes that could not be committed")
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._writer, self._lock.release)
        except StoreError as e:
            _log.error(f"SQL store: unable to release the store lock: {e}")
        await loop.run_in_executor(None, self._dispose, True)

    # ------------------------------------------------------------------ channel purge
    async def _purge(self) -> None:
        """Delete the rows of deleted channels (see ``purge.py``); what
        fails is tried again after the next successful commit."""
        loop = asyncio.get_running_loop()
        try:
            while self._to_purge and not self._closed:
                cid = self._to_purge[0]
                try:
                    await loop.run_in_executor(
                        self._writer, purge_channel, self._wengine, self.stmts, self._fence, cid
                    )
                except LockLost as e:
                    self._lock.lost(e.reason)
                    return
                except Exception as e:
                    _log.error(f"Unable to completely delete channel id {cid}: {err_text(e)}")
                    if is_disconnect(e):
                        self._unhealthy(e)
                    return  # tried again after the next successful commit
                self._to_purge.pop(0)
        finally:
            self._purge_task = None

    # ------------------------------------------------------------------ recovery
    def recover(self) -> RecoveredState | None:
        """Read the whole state (stores.md §4.7-4.9). Synchronous: the server
        runs it in a thread before it serves anything."""
        if self.ft and not self._lock.owner:
            raise StoreError("sql: recovery needs the store lock (acquire lock() first)")
        rec = SQLRecovery(self._wengine, self.stmts, self, self.channel_limits, self._fence)
        try:
            found = rec.run()
        except LockLost as e:
            self._lock.lost(e.reason)
            raise StoreError(e.reason) from None
        except SQLAlchemyError as e:
            raise StoreError(f"sql: unable to recover: {err_text(e)}") from e
        if found.state is None:
            return None
        self._max_channel_id = found.max_channel_id
        if found.max_channel_id:
            self.max_sub_id = found.max_sub_id
            self._to_purge = found.to_purge
        attach(self.crypto, (rc.channel for rc in found.state.channels.values()))
        for name, rc in found.state.channels.items():
            self.channels[name] = rc.channel
        return found.state

    # ------------------------------------------------------------------ FT lock
    def lock(self) -> SQLLock | None:
        """The StoreLock row, when opened for FT (the only mode that fences
        its writes)."""
        return self._lock if self.ft else None

    def _fence(self, conn: Connection) -> int:
        """The StoreLock fence of a write transaction (FT only): the tick it
        wrote, 0 without FT."""
        return self._lock.fence(conn) if self.ft else 0

    @property
    def fenced(self) -> bool:
        return self._lock.fenced
