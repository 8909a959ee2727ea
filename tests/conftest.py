"""Shared fixtures: a real nss process (with its real embedded nats-server)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from procs import READY_LINE, NssProcess, NssServer, free_port  # noqa: E402

__all__ = ["READY_LINE", "NssProcess", "NssServer", "free_port"]


@pytest.fixture
def nss_factory() -> Iterator[type[NssServer]]:
    started: list[NssProcess] = []

    class Factory(NssServer):
        def __init__(self, *a: str, **kw: object) -> None:
            started.append(self)
            super().__init__(*a, **kw)  # type: ignore[arg-type]

    yield Factory
    for s in started:
        s.stop()


@pytest.fixture
def nss(nss_factory: type[NssServer]) -> NssServer:
    return nss_factory()
