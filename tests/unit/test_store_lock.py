"""The FILE store's lock object (nss/stores/lock.py interface): two lock
objects on one datastore, in two real processes, since a POSIX record lock
is per process. The SQL lease row is exercised against a real PostgreSQL in
tests/integration/test_sqlstore.py (test_lock_protocol_and_fencing)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from nss.options import FileOptions, StoreLimits
from nss.stores.file import FileStore
from nss.stores.lock import StoreLock

# A second server's lock, driven line by line from stdin: each command
# ("acquire", "check", "release") answers one line.
_OTHER = textwrap.dedent(
    """
    import sys
    from nss.stores.file import FileStore
    from nss.options import FileOptions, StoreLimits

    lock = FileStore(sys.argv[1], StoreLimits(), FileOptions(do_sync=False)).lock()
    print("ready", flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "acquire":
            print(lock.acquire(), flush=True)
        elif cmd == "check":
            print(lock.check(), flush=True)
        elif cmd == "release":
            lock.release()
            print("released", flush=True)
    """
)


class Other:
    """The lock of another server process on the same directory."""

    def __init__(self, root: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _OTHER, str(root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.ask(None) == "ready"

    def ask(self, cmd: str | None) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if cmd is not None:
            self.proc.stdin.write(cmd + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline().strip()
        assert line, f"the other process ended (status {self.proc.poll()})"
        return line

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "datastore"


@pytest.fixture
def other(root: Path) -> Iterator[Other]:
    FileStore(str(root), StoreLimits(), FileOptions(do_sync=False)).close_sync()
    o = Other(root)
    yield o
    o.close()


def mine(root: Path) -> tuple[FileStore, StoreLock]:
    fs = FileStore(str(root), StoreLimits(), FileOptions(do_sync=False))
    lock = fs.lock()
    assert lock is not None
    return fs, lock


def test_one_owner_at_a_time_across_processes(root: Path, other: Other) -> None:
    fs, lock = mine(root)
    assert lock.acquire() and lock.check()
    assert other.ask("acquire") == "False"
    assert other.ask("check") == "False"  # never acquired
    lock.release()
    assert not lock.check()
    assert other.ask("acquire") == "True" and other.ask("check") == "True"
    assert lock.acquire() is False  # now the other one owns it
    assert other.ask("release") == "released"
    assert lock.acquire() and lock.check()
    fs.close_sync()


def test_closing_the_store_releases_its_lock(root: Path, other: Other) -> None:
    fs, lock = mine(root)
    assert lock.acquire()
    assert other.ask("acquire") == "False"
    fs.close_sync()
    assert other.ask("acquire") == "True"


def test_a_replaced_lock_file_counts_as_lost(root: Path, other: Other) -> None:
    """Someone removed .rootdir.lck: the other server can lock a new file
    while we still hold the old one, so ``check`` must say lost."""
    fs, lock = mine(root)
    assert lock.acquire()
    (root / ".rootdir.lck").unlink()
    assert other.ask("acquire") == "True"
    assert lock.check() is False
    fs.close_sync()


def test_release_without_owning_is_harmless(root: Path) -> None:
    fs, lock = mine(root)
    lock.release()
    lock.release()
    assert lock.acquire()
    fs.close_sync()
    fs.close_sync()
