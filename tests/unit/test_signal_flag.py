"""``-sl`` sends a signal to a running server, as the Go binary's flag does."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from nss.app import main


def test_signal_by_pid_and_pid_file(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        pidfile = tmp_path / "nss.pid"
        pidfile.write_text(str(child.pid))
        assert main(["-sl", f"term={pidfile}"]) == 0
        assert child.wait(10) == -signal.SIGTERM
    finally:
        child.kill()


def test_unknown_command_and_bad_pid() -> None:
    assert main(["-sl", "bogus=1"]) == 1
    assert main(["-sl", "quit=/nonexistent/pid"]) == 1
