"""sd_notify datagrams as systemd receives them."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from nss.sdnotify import Notifier


def test_no_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled
    n.ready("x")
    n.close()


async def test_ready_status_and_watchdog(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(path)
    sink.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    n = Notifier()
    n.ready("FT_STANDBY: standing by")
    assert sink.recv(4096) == b"READY=1\nSTATUS=FT_STANDBY: standing by"
    n.start_watchdog()
    # the loop must run to feed the watchdog: receive off the loop
    assert await asyncio.to_thread(sink.recv, 4096) == b"WATCHDOG=1"
    assert await asyncio.to_thread(sink.recv, 4096) == b"WATCHDOG=1"  # again after 0.1 s
    n.close()
    sink.close()
