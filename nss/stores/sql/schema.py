"""The SQL store's schema: what must exist, and the check made at start.

The server never creates tables (like the Go server, the user runs the
schema script, shipped in ``nss/sql`` and printed by ``nss --sql_schema
postgres``), but unlike the Go server, which fails on the first statement
that touches a missing column with a driver error, nss checks the schema when
the store opens and says in one line what is missing and what fixes it.

Missing secondary indexes are only logged: the Go Postgres script creates
``Idx_ChannelsName`` with MySQL syntax, so every database made with it lacks
that index, and such databases must keep working.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from nss.log import get_logger
from nss.sql import schema_command
from nss.stores.base import StoreError

_log = get_logger()


@dataclass(frozen=True)
class Column:
    name: str
    pg_type: str
    mysql_type: str

    def ddl(self, postgres: bool) -> str:
        return f"{self.name} {self.pg_type if postgres else self.mysql_type}"


def _c(name: str, pg: str, my: str | None = None) -> Column:
    return Column(name, pg, my if my is not None else pg)


# Table name -> columns, in the Go scripts' order (Messages is written with a
# positional INSERT, so its order matters).
TABLES: dict[str, list[Column]] = {
    "ServerInfo": [
        _c("uniquerow", "INTEGER DEFAULT 1", "INT DEFAULT 1"),
        _c("id", "VARCHAR(1024)"),
        _c("proto", "BYTEA", "BLOB"),
        _c("version", "INTEGER"),
    ],
    "Clients": [
        _c("id", "VARCHAR(1024)"),
        _c("hbinbox", "TEXT"),
        _c("proto", "BYTEA", "BLOB"),
    ],
    "Channels": [
        _c("id", "INTEGER"),
        _c("name", "VARCHAR(1024) NOT NULL"),
        _c("maxseq", "BIGINT DEFAULT 0", "BIGINT UNSIGNED DEFAULT 0"),
        _c("maxmsgs", "INTEGER DEFAULT 0"),
        _c("maxbytes", "BIGINT DEFAULT 0"),
        _c("maxage", "BIGINT DEFAULT 0"),
        _c("deleted", "BOOL DEFAULT FALSE"),
    ],
    "Messages": [
        _c("id", "INTEGER"),
        _c("seq", "BIGINT", "BIGINT UNSIGNED"),
        _c("timestamp", "BIGINT"),
        _c("size", "INTEGER"),
        _c("data", "BYTEA", "BLOB"),
    ],
    "Subscriptions": [
        _c("id", "INTEGER"),
        _c("subid", "BIGINT", "BIGINT UNSIGNED"),
        _c("lastsent", "BIGINT DEFAULT 0", "BIGINT UNSIGNED DEFAULT 0"),
        _c("proto", "BYTEA", "BLOB"),
        _c("deleted", "BOOL DEFAULT FALSE"),
    ],
    "SubsPending": [
        _c("subid", "BIGINT", "BIGINT UNSIGNED"),
        _c("row", "BIGINT", "BIGINT UNSIGNED"),
        _c("seq", "BIGINT DEFAULT 0", "BIGINT UNSIGNED DEFAULT 0"),
        _c("lastsent", "BIGINT DEFAULT 0", "BIGINT UNSIGNED DEFAULT 0"),
        _c("pending", "BYTEA", "BLOB"),
        _c("acks", "BYTEA", "BLOB"),
    ],
    "StoreLock": [
        _c("id", "VARCHAR(30)"),
        _c("tick", "BIGINT DEFAULT 0", "BIGINT UNSIGNED DEFAULT 0"),
    ],
}

# index name -> (table, columns)
INDEXES: dict[str, tuple[str, str]] = {
    "Idx_ChannelsName": ("Channels", "name"),
    "Idx_MsgsTimestamp": ("Messages", "timestamp"),
    "Idx_SubsPendingSeq": ("SubsPending", "seq"),
}

_PKS = {
    "ServerInfo": "PRIMARY KEY (uniquerow)",
    "Clients": "PRIMARY KEY (id)",
    "Channels": "PRIMARY KEY (id)",
    "Messages": "CONSTRAINT PK_MsgKey PRIMARY KEY(id, seq)",
    "Subscriptions": "CONSTRAINT PK_SubKey PRIMARY KEY(id, subid)",
    "SubsPending": "CONSTRAINT PK_MsgPendingKey PRIMARY KEY(subid, row)",
}


def create_table_stmt(table: str, postgres: bool) -> str:
    cols = [c.ddl(postgres) for c in TABLES[table]]
    pk = _PKS.get(table)
    if pk:
        if not postgres:
            pk = pk.replace("(id)", "(id(256))") if table == "Clients" else pk
            pk = pk.replace("row)", "`row`)")
        cols.append(pk)
    body = ", ".join(cols)
    if not postgres:
        body = body.replace("row BIGINT", "`row` BIGINT")
    return f"CREATE TABLE IF NOT EXISTS {table} ({body})"


def add_column_stmt(table: str, col: Column, postgres: bool) -> str:
    name = col.name if postgres or col.name != "row" else "`row`"
    typ = col.pg_type if postgres else col.mysql_type
    return f"ALTER TABLE {table} ADD {name} {typ}"


def create_index_stmt(name: str, postgres: bool) -> str:
    table, col = INDEXES[name]
    if postgres:
        return f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({col})"
    if col == "name":
        col = "name(256)"
    return f"CREATE INDEX {name} ON {table} ({col})"


def check_schema(conn: Connection, postgres: bool) -> None:
    """Raise StoreError naming every missing table or column and what adds
    it; log missing indexes."""
    insp = inspect(conn)
    tables = {t.lower(): t for t in insp.get_table_names()}
    missing_tables: list[str] = []
    missing_cols: list[tuple[str, Column]] = []
    for table, cols in TABLES.items():
        actual = tables.get(table.lower())
        if actual is None:
            missing_tables.append(table)
            continue
        have = {c["name"].lower() for c in insp.get_columns(actual)}
        missing_cols.extend((table, c) for c in cols if c.name.lower() not in have)
    if missing_tables or missing_cols:
        raise StoreError(schema_problem(missing_tables, missing_cols, postgres))
    for name, (table, _) in INDEXES.items():
        actual = tables[table.lower()]
        names = {(ix.get("name") or "").lower() for ix in insp.get_indexes(actual)}
        if name.lower() not in names:
            _log.warning(
                f"SQL store: index {name} is missing, purging and lookups will be slower "
                f"(fix: {create_index_stmt(name, postgres)})"
            )


def schema_problem(
    missing_tables: list[str], missing_cols: list[tuple[str, Column]], postgres: bool
) -> str:
    """One line: what is missing and, once, how to fix it.

    A database with none of the tables (a newcomer who skipped the script)
    gets the command that creates them; a partial schema (a Go database of
    an old version, a hand-made one) gets the statements for exactly what is
    missing, since the idempotent script cannot add a column to an existing
    table."""
    command = schema_command("postgres" if postgres else "mysql")
    if len(missing_tables) == len(TABLES):
        return f"sql: the database has no nss tables; create them with: {command}"
    what = [f"table {t} is missing" for t in missing_tables]
    what += [f"column {t}.{c.name} is missing" for t, c in missing_cols]
    fixes = [create_table_stmt(t, postgres) for t in missing_tables]
    fixes += [add_column_stmt(t, c, postgres) for t, c in missing_cols]
    return f"sql: database schema is incomplete: {', '.join(what)}; fix: {'; '.join(fixes)}"
