"""systemd notifications (``Type=notify`` units): READY, STATUS, WATCHDOG.

No dependency on libsystemd: the protocol is one datagram per message on
the socket named by ``$NOTIFY_SOCKET``. Outside systemd every call is a
no-op. The watchdog is fed from the event loop, so a stuck loop (not just a
dead process) gets the service restarted.
"""

from __future__ import annotations

import asyncio
import os
import socket


class Notifier:
    def __init__(self) -> None:
        addr = os.environ.get("NOTIFY_SOCKET", "")
        self._addr = "\0" + addr[1:] if addr.startswith("@") else addr
        self._sock: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        if self._addr:
            try:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            except OSError:
                self._sock = None

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *fields: str) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendto("\n".join(fields).encode(), self._addr)
        except OSError:
            pass

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def start_watchdog(self) -> None:
        """Ping at half the interval systemd asked for (``$WATCHDOG_USEC``)."""
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        if self._sock is None or not usec.isdigit() or (pid and pid != str(os.getpid())):
            return
        interval = int(usec) / 2e6

        async def feed() -> None:
            while True:
                self.send("WATCHDOG=1")
                await asyncio.sleep(interval)

        self._task = asyncio.get_running_loop().create_task(feed())

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
