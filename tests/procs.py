"""Real nss processes for the tests, started the way users and client test
suites start them; readiness is read from the server's own log line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

READY_LINE = "Streaming Server is ready"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NssProcess:
    """A running nss; ``lines`` collects everything it logs."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str] | None = None,
        prefix: list[str] | None = None,
        program: list[str] | None = None,
    ) -> None:
        """``program`` replaces ``python -m nss`` (e.g. nss run from a
        container image); ``prefix`` goes before it (e.g. a netns exec)."""
        self.args = args
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            [*(prefix or []), *(program or [sys.executable, "-m", "nss"]), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=str(ROOT),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for_line(self, text: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise AssertionError(
                        f"nss exited ({self.proc.returncode}) before logging {text!r}:\n"
                        + "\n".join(self.lines[-30:])
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"nss did not log {text!r} in {timeout}s:\n" + "\n".join(self.lines[-30:])
                    )
                self._cond.wait(min(left, 0.1))

    def log_text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)


class NssServer(NssProcess):
    def __init__(self, *extra: str, port: int | None = None, cluster_id: str = "test-cluster"):
        self.port = port or free_port()
        self.cluster_id = cluster_id
        super().__init__(["-p", str(self.port), "-cid", cluster_id, "-SDV", *extra])
        self.url = f"nats://127.0.0.1:{self.port}"
        self.wait_for_line(READY_LINE)




def nats_child_pid(p: NssProcess, timeout: float = 10.0) -> int:
    """The pid of nss's nats-server child (a new one after a restart)."""
    deadline = time.monotonic() + timeout
    while True:
        for task in Path(f"/proc/{p.proc.pid}/task").glob("*"):
            try:
                kids = (task / "children").read_text().split()
            except OSError:
                continue
            for kid in kids:
                try:
                    if Path(f"/proc/{kid}/comm").read_text().strip() == "nats-server":
                        return int(kid)
                except OSError:
                    continue
        if time.monotonic() > deadline:
            raise AssertionError("nss has no nats-server child")
        time.sleep(0.02)
