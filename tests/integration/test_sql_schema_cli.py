"""A newcomer's first SQL start: the database has no tables. nss says so in
one line naming the command, and that command (the schema script shipped in
the package, piped to psql) is all it takes to start."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from procs import ROOT, NssServer, free_port

pytest_plugins = ["pg"]


def test_empty_database_one_line_then_the_named_command_fixes_it(
    pg_server: Any, nss_factory: type[NssServer]
) -> None:
    pg_server.create_db("nss_first_start", schema=False)
    dsn = pg_server.dsn("nss_first_start")
    args = ["-st", "sql", "--sql_driver", "postgres", "--sql_source", dsn]
    res = subprocess.run(
        [sys.executable, "-m", "nss", *args, "-p", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(ROOT),
    )
    assert res.returncode == 1
    failed = [ln for ln in (res.stdout + res.stderr).splitlines() if "Failed to start" in ln]
    assert len(failed) == 1
    reason = failed[0].split("Failed to start: ", 1)[1]
    assert reason == (
        "sql: the database has no nss tables; create them with: "
        "nss --sql_schema postgres | psql -d <database>"
    )

    schema = subprocess.run(
        [sys.executable, "-m", "nss", "--sql_schema", "postgres"],
        capture_output=True,
        check=True,
        cwd=str(ROOT),
    )
    subprocess.run(
        [str(pg_server.bindir / "psql"), "-q", "-v", "ON_ERROR_STOP=1", dsn],
        input=schema.stdout,
        capture_output=True,
        check=True,
    )
    nss_factory(*args)  # waits for "Streaming Server is ready"
