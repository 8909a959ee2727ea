"""``--sql_driver``/``--sql_source`` translation (Go DSNs -> psycopg/SQLAlchemy)."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from nss.stores.base import StoreError
from nss.stores.sql.dsn import parse_kv_dsn, parse_source
from nss.stores.sql.schema import add_column_stmt, create_index_stmt, create_table_stmt


def test_kv_dsn_quoting() -> None:
    got = parse_kv_dsn(r"host=db  port = 5433 password='a b\'c' user=nss dbname=x\ y")
    assert got == {
        "host": "db",
        "port": "5433",
        "password": "a b'c",
        "user": "nss",
        "dbname": "x y",
    }
    with pytest.raises(StoreError):
        parse_kv_dsn("host")
    with pytest.raises(StoreError):
        parse_kv_dsn("password='open")


def test_postgres_kv_source_drops_go_only_keys() -> None:
    t = parse_source(
        "postgres",
        "host=127.0.0.1 port=5432 dbname=nss user=u password='p w' sslmode=disable "
        "readTimeout=5s writeTimeout=5s binary_parameters=yes",
    )
    assert t.postgres and t.url == "postgresql+psycopg://"
    d = conninfo_to_dict(t.conninfo)  # libpq accepts every key left
    assert d["password"] == "p w" and d["sslmode"] == "disable" and d["dbname"] == "nss"
    assert "readTimeout" not in d and "binary_parameters" not in d
    assert d["connect_timeout"] == "5" and d["keepalives"] == "1"
    t = parse_source("postgres", "dbname=nss connect_timeout=2")
    assert conninfo_to_dict(t.conninfo)["connect_timeout"] == "2"


def test_postgres_url_source() -> None:
    t = parse_source("postgres", "postgres://u:pw@db:5433/nss?sslmode=disable&readTimeout=1s")
    d = conninfo_to_dict(t.conninfo)
    assert (d["host"], d["port"], d["dbname"], d["user"], d["password"]) == (
        "db",
        "5433",
        "nss",
        "u",
        "pw",
    )
    assert d["sslmode"] == "disable" and "readTimeout" not in d
    with pytest.raises(StoreError):
        parse_source("postgres", "mysql://x/y")


def test_mysql_go_dsn() -> None:
    t = parse_source("mysql", "nss:s3cr%t@tcp(db:3307)/nssdb?charset=utf8mb4&readTimeout=2s")
    assert not t.postgres
    assert t.url == "mysql+pymysql://nss:s3cr%25t@db:3307/nssdb?charset=utf8mb4"
    assert t.connect_args == {"read_timeout": 2.0, "connect_timeout": 5}
    t = parse_source("mysql", "root@unix(/run/mysqld/mysqld.sock)/nss")
    assert t.url == "mysql+pymysql://root@localhost/nss?unix_socket=%2Frun%2Fmysqld%2Fmysqld.sock"
    assert parse_source("mysql", "/nss").url == "mysql+pymysql://127.0.0.1:3306/nss"
    with pytest.raises(StoreError):
        parse_source("mysql", "no-slash")


def test_unknown_driver() -> None:
    with pytest.raises(StoreError, match='unknown driver "oracle"'):
        parse_source("oracle", "x")


def test_schema_statements_per_dialect() -> None:
    assert create_table_stmt("SubsPending", True) == (
        "CREATE TABLE IF NOT EXISTS SubsPending (subid BIGINT, row BIGINT, seq BIGINT DEFAULT 0, "
        "lastsent BIGINT DEFAULT 0, pending BYTEA, acks BYTEA, "
        "CONSTRAINT PK_MsgPendingKey PRIMARY KEY(subid, row))"
    )
    my = create_table_stmt("SubsPending", False)
    assert "`row` BIGINT UNSIGNED" in my and "PRIMARY KEY(subid, `row`)" in my
    assert "PRIMARY KEY (id(256))" in create_table_stmt("Clients", False)
    from nss.stores.sql.schema import TABLES

    proto = TABLES["Clients"][2]
    assert add_column_stmt("Clients", proto, True) == "ALTER TABLE Clients ADD proto BYTEA"
    assert add_column_stmt("Clients", proto, False) == "ALTER TABLE Clients ADD proto BLOB"
    assert create_index_stmt("Idx_ChannelsName", True).endswith("ON Channels (name)")
    assert create_index_stmt("Idx_ChannelsName", False).endswith("ON Channels (name(256))")


def test_multi_host_source_skips_read_only_servers() -> None:
    """A source naming a primary and its standbys connects to whichever is
    writable: without target_session_attrs the store could land on a
    standby and fail every commit after a fail-over."""
    kv = parse_source("postgres", "host=a,b port=5432,5433 dbname=nss user=u")
    d = conninfo_to_dict(kv.conninfo)
    assert d["host"] == "a,b" and d["port"] == "5432,5433"
    assert d["target_session_attrs"] == "read-write"
    url = parse_source("postgres", "postgresql://u:p@a:5432,b:5433/nss?sslmode=disable")
    assert "target_session_attrs=read-write" in url.conninfo
    assert conninfo_to_dict(url.conninfo)["host"] == "a,b"
    # the user's choice stands; a single host is left alone
    own = parse_source("postgres", "host=a,b dbname=nss target_session_attrs=primary")
    assert conninfo_to_dict(own.conninfo)["target_session_attrs"] == "primary"
    one = parse_source("postgres", "host=a dbname=nss")
    assert "target_session_attrs" not in conninfo_to_dict(one.conninfo)
    one_url = parse_source("postgres", "postgresql://u@a:5432/nss")
    assert "target_session_attrs" not in one_url.conninfo


def test_a_read_only_session_counts_as_a_broken_connection() -> None:
    """A pooled connection whose server turned read-only passes the pool's
    pre-ping yet can never commit: it is dropped like a broken one, so the
    next one finds the writable server (multi-host source)."""
    from types import SimpleNamespace

    import psycopg.errors as pge

    from nss.stores.sql.db import _read_only_is_a_disconnect

    def handled(exc: BaseException) -> bool:
        ctx = SimpleNamespace(original_exception=exc, is_disconnect=False)
        _read_only_is_a_disconnect(ctx)  # type: ignore[arg-type]
        return ctx.is_disconnect

    assert handled(pge.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"))
    assert not handled(pge.UniqueViolation("duplicate key"))
    assert handled(Exception(1290, "The MySQL server is running with the --read-only option"))
    assert not handled(Exception(1062, "Duplicate entry"))
