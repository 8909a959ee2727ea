"""FT fixtures: a NATS server of its own (so killing an nss does not take the
NATS server its peers use with it) and nss processes of one FT group."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from procs import NssProcess, free_port

from nss.natsd import find_nats_server


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
