"""Connections of the SQL store: the engines, and what a database error
says."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from nss.stores.sql.dsn import SQLTarget


def make_engines(tgt: SQLTarget, max_open_conns: int) -> tuple[Engine, Engine]:
    """The writer's engine (transactions) and the reader's (autocommit)."""
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

        conninfo = tgt.conninfo

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
    return w, r


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
