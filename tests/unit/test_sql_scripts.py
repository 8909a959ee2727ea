"""The schema scripts shipped in the package (``nss --sql_schema``) create
exactly what the SQL store checks at start, and the store's complaint about
a missing schema is one line that says how to fix it."""

from __future__ import annotations

import re

import pytest

from nss import sql as scripts
from nss.stores.sql.schema import INDEXES, TABLES, Column, schema_problem


def _split_top(body: str) -> list[str]:
    """Comma-separated parts of a column list, outside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in body:
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    return [*parts, cur.strip()]


def _created(text: str) -> tuple[dict[str, list[tuple[str, str]]], set[str]]:
    """Tables (name -> [(column, type)]) and index names a script creates."""
    tables: dict[str, list[tuple[str, str]]] = {}
    indexes: set[str] = set()
    # the scripts hold no quoted ';' or '--': comments off, split on ';'
    statements = [s.strip() for s in re.sub(r"--[^\n]*", "", text).split(";")]
    for stmt in filter(None, statements):
        m = re.match(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*)\)$", stmt, re.S)
        if m:
            cols = []
            for part in _split_top(m.group(2)):
                if re.match(r"(PRIMARY KEY|CONSTRAINT|INDEX)\b", part):
                    indexes.update(re.findall(r"INDEX (\w+)", part))
                    continue
                name, typ = part.split(" ", 1)
                cols.append((name.strip("`"), typ))
            tables[m.group(1)] = cols
        indexes.update(re.findall(r"CREATE INDEX IF NOT EXISTS (\w+)", stmt))
    return tables, indexes


@pytest.mark.parametrize("driver", ["postgres", "mysql"])
def test_shipped_script_creates_what_the_store_checks(driver: str) -> None:
    postgres = driver == "postgres"
    tables, indexes = _created(scripts.script(driver))
    expected = {
        t: [(c.name, c.pg_type if postgres else c.mysql_type) for c in cols]
        for t, cols in TABLES.items()
    }
    assert tables == expected
    assert indexes == set(INDEXES)


def test_drop_script_drops_every_table_and_index() -> None:
    text = scripts.script("drop_postgres")
    assert set(re.findall(r"DROP TABLE IF EXISTS (\w+);", text)) == set(TABLES)
    assert set(re.findall(r"DROP INDEX IF EXISTS (\w+);", text)) == set(INDEXES)


def test_script_names() -> None:
    assert scripts.script("PostgreSQL") == scripts.script("postgres")
    with pytest.raises(ValueError, match="postgres, mysql, drop_postgres"):
        scripts.script("oracle")


@pytest.mark.parametrize("postgres", [True, False])
def test_no_tables_is_one_short_line_naming_the_command(postgres: bool) -> None:
    msg = schema_problem(list(TABLES), [], postgres)
    driver = "postgres" if postgres else "mysql"
    client = "psql -d <database>" if postgres else "mysql <database>"
    assert msg == (
        "sql: the database has no nss tables; create them with: "
        f"nss --sql_schema {driver} | {client}"
    )
    assert "\n" not in msg and len(msg) < 120


def test_partial_schema_names_each_missing_part_once() -> None:
    proto: Column = TABLES["Clients"][2]
    msg = schema_problem(["StoreLock"], [("Clients", proto)], True)
    assert msg == (
        "sql: database schema is incomplete: table StoreLock is missing, "
        "column Clients.proto is missing; fix: "
        "CREATE TABLE IF NOT EXISTS StoreLock (id VARCHAR(30), tick BIGINT DEFAULT 0); "
        "ALTER TABLE Clients ADD proto BYTEA"
    )
