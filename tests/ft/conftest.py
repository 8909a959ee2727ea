"""FT fixtures: a NATS server of its own (so killing an nss does not take the
NATS server its peers use with it), nss processes of one FT group, and the
store ``backend`` the group shares.

Scenarios that hold for every backend take the ``backend`` fixture and run
once per store (FILE, SQL); a module of backend-specific scenarios narrows it
with ``pytestmark = pytest.mark.parametrize("backend", ["SQL"], indirect=True)``.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from procs import READY_LINE, NssProcess, free_port

from nss.natsd import find_nats_server

# heartbeats ten times faster than the defaults, so fail-overs take ~0.3 s
FAST = ("--ft_hb_interval", "100ms", "--ft_hb_missed_interval", "250ms")


class NatsServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [find_nats_server(), "-a", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("nats-server did not start") from None
                time.sleep(0.02)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    s = NatsServer()
    yield s
    s.stop()


@pytest.fixture
def ft_member(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory):
    """Start nss members of one group; they share a datastore directory."""
    started: list[NssProcess] = []
    shared = str(tmp_path_factory.mktemp("ft") / "datastore")

    def start(*extra: str, store: tuple[str, ...] | None = None) -> NssProcess:
        store_args = store if store is not None else ("-store", "file", "-dir", shared)
        p = NssProcess(
            ["-ns", nats_server.url, "-SD", "--ft_group", "grp", *store_args, *extra]
        )
        started.append(p)
        return p

    start.nats = nats_server  # type: ignore[attr-defined]
    start.dir = shared  # type: ignore[attr-defined]
    yield start
    for p in started:
        p.stop()


@dataclass(frozen=True)
class Backend:
    """One shared store and what fail-over on it takes."""

    name: str
    store: tuple[str, ...]
    # SIGKILL to "Server is active": FILE's POSIX lock dies with the process,
    # an SQL lease is stolen only after the steal window
    takeover_timeout: float
    # before a SIGKILL, time for acks to reach the store (SQL commits them
    # within the idle flush delay)
    ack_settle: float
    dir: str = ""
    dsn: str = ""


@pytest.fixture(params=["FILE", "SQL"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Backend:
    if request.param == "FILE":
        d = str(tmp_path_factory.mktemp("ft") / "datastore")
        return Backend("FILE", ("-store", "file", "-dir", d), 10, 0.05, dir=d)
    pg_server = request.getfixturevalue("pg_server")
    dsn = pg_server.create_db(re.sub(r"\W", "_", "nss_ft_" + request.node.name.lower())[:60])
    store = ("-store", "sql", "--sql_driver", "postgres", "--sql_source", dsn)
    return Backend("SQL", store, 20, 0.5, dsn=dsn)


Member = Callable[..., NssProcess]


@pytest.fixture
def group(ft_member: Any, backend: Backend) -> Member:
    """Start a member of the group on the backend's store, fast heartbeats."""

    def start(*extra: str) -> NssProcess:
        return ft_member(*FAST, *extra, store=backend.store)

    start.nats = ft_member.nats  # type: ignore[attr-defined]
    start.backend = backend  # type: ignore[attr-defined]
    return start


@pytest.fixture
def pair(group: Member) -> tuple[NssProcess, NssProcess]:
    """An active that started as a standby and is serving, and a standby."""
    a = group()
    a.wait_for_line("Starting in standby mode")
    a.wait_for_line("Server is active")
    a.wait_for_line(READY_LINE, timeout=15)
    b = group()
    b.wait_for_line("Starting in standby mode")
    return a, b
