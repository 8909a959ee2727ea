"""A throw-away PostgreSQL server for the SQL store tests.

The SQL store is only worth testing against a real database: transactions,
``FOR SHARE`` fencing, dropped connections and the exact Go row shapes are
what can go wrong, and none of that shows with a fake. So the tests run
Debian's PostgreSQL binaries (``/usr/lib/postgresql/*/bin``; ``scripts/test``
installs the ``postgresql`` package when they are missing): ``initdb`` into a
temporary directory, one server on a free loopback port, one database per
test module created with the shipped schema script (``nss --sql_schema
postgres``).

The benchmarks' servers fsync like a production one. The tests' shared
server does not: what they kill is PostgreSQL's process (``-m immediate``),
never the machine, and a commit written to the OS survives that; the SQL
tests then take a fifth less time.

PostgreSQL refuses to run as root, so when the tests run as root the server
binaries run as the ``postgres`` user (created by the Debian package).

Use it from a test module with::

    pytest_plugins = ["pg"]

which provides the fixtures ``pg_server`` (session) and ``pg_db`` (module).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nss.sql import script as schema_script


def find_bindir() -> Path | None:
    """Newest Debian PostgreSQL server binaries, or ``$NSS_PG_BINDIR``."""
    env = os.environ.get("NSS_PG_BINDIR")
    if env:
        return Path(env)
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    if not found:
        return None

    def version(p: Path) -> tuple[int, ...]:
        try:
            return tuple(int(x) for x in p.parent.name.split("."))
        except ValueError:
            return (0,)

    return max(found, key=version)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """One PostgreSQL cluster: ``start``/``stop`` can be called repeatedly
    (the lost-database tests stop it under a running store).

    ``settings`` are passed as ``-c name=value`` at every start; with
    ``base_backup_of`` the data directory is a ``pg_basebackup -R`` copy of
    that (running) server instead of a fresh ``initdb``: a streaming
    standby, see :func:`replicated_pair`."""

    def __init__(
        self,
        bindir: Path,
        settings: dict[str, str] | None = None,
        base_backup_of: PgServer | None = None,
    ) -> None:
        self.bindir = bindir
        self.port = _free_port()
        self.settings = dict(settings or {})
        self._emptied: set[str] = set()
        self.tmp = Path(tempfile.mkdtemp(prefix="nss-pg-"))
        self.data = self.tmp / "data"
        self.log = self.tmp / "server.log"
        self._as_user: str | None = None
        if os.geteuid() == 0:
            self._as_user = "postgres"
            pw = pwd.getpwnam("postgres")
            os.chown(self.tmp, pw.pw_uid, pw.pw_gid)
            os.chmod(self.tmp, 0o700)
        if base_backup_of is not None:
            src = base_backup_of
            # -R: standby.signal and primary_conninfo, so it starts as a
            # streaming standby of src; -X stream: the WAL written meanwhile
            self._run(
                "pg_basebackup",
                "-h",
                "127.0.0.1",
                "-p",
                str(src.port),
                "-U",
                "postgres",
                "-D",
                str(self.data),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            )
            return
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
        )

    def _cmd(self, tool: str, *args: str) -> list[str]:
        cmd = [str(self.bindir / tool), *args]
        if self._as_user:
            cmd = ["runuser", "-u", self._as_user, "--", *cmd]
        return cmd

    def _run(self, tool: str, *args: str) -> None:
        res = subprocess.run(
            self._cmd(tool, *args), cwd=str(self.tmp), capture_output=True, text=True
        )
        if res.returncode != 0:
            raise RuntimeError(f"{tool} failed ({res.returncode}): {res.stdout}{res.stderr}")

    def start(self) -> None:
        opts = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.tmp}"
            " -c fsync=on -c max_connections=200"
        )
        for k, v in self.settings.items():
            opts += f" -c {k}={v}"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def promote(self) -> None:
        """A standby becomes a primary (returns once it accepts writes)."""
        self._run("pg_ctl", "-D", str(self.data), "-w", "promote")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def destroy(self) -> None:
        if self.running():
            try:
                self.stop("immediate")
            except RuntimeError:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------------ databases
    def dsn(self, dbname: str = "postgres") -> str:
        """A Go-style key=value data source name, as users pass --sql_source."""
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user=postgres sslmode=disable"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}?sslmode=disable"

    def admin(self, sql: str, dbname: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.dsn(dbname), autocommit=True) as c:
            c.execute(sql)  # type: ignore[arg-type]

    def query(self, sql: str, dbname: str = "postgres") -> list[tuple]:
        import psycopg

        with psycopg.connect(self.dsn(dbname), autocommit=True) as c:
            return list(c.execute(sql).fetchall())  # type: ignore[arg-type]

    def create_db(self, name: str, schema: bool = True) -> str:
        """A fresh database (dropped first if it exists), with the nss schema."""
        self._emptied.discard(name)
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.admin(f'CREATE DATABASE "{name}"')
        if schema:
            self.run_script(name, schema_script("postgres"))
        return self.dsn(name)

    def empty_db(self, name: str) -> str:
        """A database with the nss schema and no rows, for tests that need
        many and leave the schema alone: the first call creates it, the next
        ones empty its tables, some fifteen times faster than dropping and
        creating it again."""
        if name not in self._emptied:
            self.create_db(name)
            self._emptied.add(name)
            return self.dsn(name)
        import psycopg

        with psycopg.connect(self.dsn(name), autocommit=True) as c:
            found = c.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            tables = ", ".join(f'"{r[0]}"' for r in found)
            c.execute(f"TRUNCATE {tables} RESTART IDENTITY")  # type: ignore[arg-type]
        return self.dsn(name)

    def run_script(self, dbname: str, text: str) -> None:
        """Run a SQL script (a pg_dump or a schema script) statement by
        statement; psql meta-commands (``\\restrict``) are skipped, so the
        tests do not depend on the psql version."""
        import psycopg

        lines = [ln for ln in text.splitlines() if not ln.startswith("\\")]
        with psycopg.connect(self.dsn(dbname), autocommit=True) as c:
            for stmt in split_sql("\n".join(lines)):
                c.execute(stmt)  # type: ignore[arg-type]


def replicated_pair(bindir: Path, timeout: float = 30) -> tuple[PgServer, PgServer]:
    """A primary and a synchronous streaming standby of it, both running.

    The primary waits at every commit until the standby has the commit's
    WAL on disk (``synchronous_commit=on`` with the standby named in
    ``synchronous_standby_names``): once nss acknowledges a message it is on
    both servers. The standby is started without
    ``synchronous_standby_names``, so that once promoted it commits alone
    (the primary is gone; nothing could confirm its commits)."""
    primary = PgServer(
        bindir,
        {
            "synchronous_standby_names": "replica1",
            "synchronous_commit": "on",
            "wal_level": "replica",
        },
    )
    standby: PgServer | None = None
    try:
        primary.start()
        _wait_ready(primary, timeout)
        # cluster_name is the standby's application_name on the primary
        standby = PgServer(bindir, {"cluster_name": "replica1"}, base_backup_of=primary)
        standby.start()
        deadline = time.monotonic() + timeout
        while primary.query(
            "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'replica1'"
        ) != [("sync",)]:
            if time.monotonic() > deadline:
                raise RuntimeError("the standby did not become a synchronous standby")
            time.sleep(0.05)
    except BaseException:
        if standby is not None:
            standby.destroy()
        primary.destroy()
        raise
    return primary, standby


def _wait_ready(srv: PgServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            srv.admin("SELECT 1")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def split_sql(text: str) -> list[str]:
    """Statements of a script: split on ``;`` outside quotes and comments."""
    out: list[str] = []
    buf: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "-" and text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
            continue
        if ch == "'":
            j = i + 1
            while j < n:
                if text[j] == "'":
                    if j + 1 < n and text[j + 1] == "'":
                        j += 2
                        continue
                    break
                j += 1
            buf.append(text[i : j + 1])
            i = j + 1
            continue
        if ch == ";":
            stmt = "".join(buf).strip()
            if stmt:
                out.append(stmt)
            buf = []
            i += 1
            continue
        buf.append(ch)
        i += 1
    stmt = "".join(buf).strip()
    if stmt:
        out.append(stmt)
    return out


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql)")
    srv = PgServer(bindir, {"fsync": "off"})
    try:
        srv.start()
        _wait_ready(srv, 20)
        yield srv
    finally:
        srv.destroy()


@pytest.fixture(scope="module")
def pg_db(pg_server: PgServer, request: pytest.FixtureRequest) -> str:
    """DSN of a fresh database with the nss schema, one per test module."""
    name = "nss_" + request.module.__name__.rsplit(".", 1)[-1].lower()
    return pg_server.create_db(name[:60])
