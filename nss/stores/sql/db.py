"""Connections of the SQL store: the engines, and what a database error
says."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, ExceptionContext
from sqlalchemy.exc import DBAPIError

from nss.log import get_logger
from nss.stores.sql.dsn import SQLTarget

_log = get_logger()

# A live server may pause that long between two statements of one
# transaction (recovery parses a large result before its next query; the
# writer thread waits for the GIL): a limit below it would end the session
# of a server that is merely busy, failing its recovery.
IDLE_TX_MIN = 5.0


def make_engines(
    tgt: SQLTarget, max_open_conns: int, idle_tx_timeout: float = 0
) -> tuple[Engine, Engine]:
    """The writer's engine (transactions) and the reader's (autocommit).

    ``idle_tx_timeout`` (FT: the steal window): the database ends a writer
    session that sits idle inside a transaction that long, but never sooner
    than ``IDLE_TX_MIN`` (PostgreSQL; MariaDB in whole seconds; MySQL has no
    such limit). A process frozen (or cut off) between two statements
    otherwise keeps its row locks, the StoreLock row among them, for as long
    as it lives: its standby would wait on that row forever instead of
    taking over."""
    n = max_open_conns
    if n > 0:
        wpool: dict[str, Any] = {"pool_size": max(1, n - 1), "max_overflow": 0}
    else:
        wpool = {"pool_size": 4, "max_overflow": 16}
    rpool: dict[str, Any] = {"pool_size": 2, "max_overflow": 0}
    # pre-ping: a pooled connection that died with a database restart is
    # replaced at checkout instead of failing the batch that gets it
    common: dict[str, Any] = {"pool_timeout": 30, "pool_pre_ping": True}
    if tgt.postgres:
        import psycopg

        from nss.stores.sql.hosts import MultiHostConnect, split_hosts

        conninfo = tgt.conninfo
        multi = split_hosts(conninfo)
        creator: Any
        if multi is not None:
            creator = MultiHostConnect(*multi)
        else:

            def creator() -> Any:
                return psycopg.connect(conninfo)

        w = create_engine(tgt.url, creator=creator, **wpool, **common)
        r = create_engine(
            tgt.url, creator=creator, isolation_level="AUTOCOMMIT", **rpool, **common
        )
    else:
        w = create_engine(tgt.url, connect_args=tgt.connect_args, **wpool, **common)
        r = create_engine(
            tgt.url,
            connect_args=tgt.connect_args,
            isolation_level="AUTOCOMMIT",
            **rpool,
            **common,
        )
    for e in (w, r):
        event.listen(e, "handle_error", _read_only_is_a_disconnect)
    if idle_tx_timeout > 0:
        limit = max(idle_tx_timeout, IDLE_TX_MIN)
        event.listen(w, "connect", _IdleTransactionLimit(limit, tgt.postgres))
    return w, r


# MySQL's "unknown system variable": its servers lack MariaDB's limit
_MYSQL_UNKNOWN_VARIABLE = 1193


class _IdleTransactionLimit:
    """Sets the idle-in-transaction limit on each new session (committed,
    so that the pool's reset-on-return keeps it). A MySQL server without
    one is said once: there a frozen active keeps its standby waiting."""

    def __init__(self, seconds: float, postgres: bool) -> None:
        if postgres:
            self.sql = f"SET idle_in_transaction_session_timeout = {max(1, round(seconds * 1000))}"
        else:
            self.sql = f"SET SESSION idle_transaction_timeout = {math.ceil(seconds)}"
        self.supported = True

    def __call__(self, dbapi_conn: Any, _record: Any) -> None:
        if not self.supported:
            return
        try:
            with dbapi_conn.cursor() as cur:
                cur.execute(self.sql)
        except Exception as e:  # noqa: BLE001 - only MySQL's unknown variable is expected
            if error_code(e) != _MYSQL_UNKNOWN_VARIABLE:
                raise
            self.supported = False
            _log.warning(
                "SQL store: this MySQL server has no idle_transaction_timeout (MariaDB "
                "has): a standby cannot take over from an active frozen inside a transaction"
            )
        dbapi_conn.commit()


# SQLSTATE 25006 (PostgreSQL read_only_sql_transaction); MySQL 1290
# (--read-only / --super-read-only) and 1792 (read-only transaction)
_PG_READ_ONLY = "25006"
_MYSQL_READ_ONLY = (1290, 1792)


def _read_only_is_a_disconnect(ctx: ExceptionContext) -> None:
    """A connection whose server turned read-only (a primary demoted under
    it, a standby reached by a source without
    ``target_session_attrs=read-write``) can never write again, yet passes
    the pool's pre-ping: drop it like a broken one, so that the next
    checkout connects anew and finds the writable server."""
    code = error_code(ctx.original_exception)
    if code == _PG_READ_ONLY or code in _MYSQL_READ_ONLY:
        ctx.is_disconnect = True


def error_code(exc: BaseException | None) -> str | int | None:
    """What a driver's error says it is: MySQL's error number (PyMySQL,
    whose errors carry a generic SQLSTATE beside it) or PostgreSQL's
    SQLSTATE (psycopg); None when it says neither."""
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    sqlstate = getattr(exc, "sqlstate", None)
    return str(sqlstate) if sqlstate else None


def server_address(conn: Connection) -> str:
    """``host:port`` of the server a connection reached (which host of a
    multi-host source answered)."""
    raw: Any = conn.connection.dbapi_connection
    info = getattr(raw, "info", None)
    if info is not None and hasattr(info, "port"):  # psycopg
        host, port = info.host, info.port
    else:  # PyMySQL
        host, port = getattr(raw, "host", "?"), getattr(raw, "port", "?")
    return f"{host}:{port}"


def backend_pid(conn: Connection) -> int:
    """The PostgreSQL backend serving a connection (0 for MySQL)."""
    info = getattr(conn.connection.dbapi_connection, "info", None)
    return int(getattr(info, "backend_pid", 0) or 0)


def is_disconnect(e: BaseException) -> bool:
    """The connection is gone (not a statement that failed)."""
    if isinstance(e, DBAPIError):
        if e.connection_invalidated:
            return True
        name = type(e.orig).__name__ if e.orig is not None else ""
        return name in ("OperationalError", "InterfaceError")
    return False


def err_text(e: BaseException) -> str:
    """The driver's own message (its first line), without SQLAlchemy's wrapping."""
    if isinstance(e, DBAPIError) and e.orig is not None:
        return str(e.orig).strip().splitlines()[0] if str(e.orig).strip() else type(e).__name__
    return str(e) or type(e).__name__
