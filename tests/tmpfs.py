"""A small tmpfs the test mounts itself: a real full (or read-only) disk.

Disk-full and read-only behaviour is only worth testing on a real file
system: a mocked ``write`` that raises ENOSPC says nothing about partial
writes, what ``ftruncate`` and ``unlink`` still manage on a full disk, or
what PostgreSQL does when its tablespace cannot grow. Mounting needs root
(CAP_SYS_ADMIN); elsewhere the tests that use it are skipped with the reason.

Use it from a test module with::

    pytest_plugins = ["tmpfs"]

which provides the fixture ``tmpfs``: ``tmpfs(size_kb, extra, at)`` mounts
a new tmpfs of that size (``extra``: more mount options) on a new directory
``at`` (default: under the test's ``tmp_path``) and returns a ``Tmpfs``;
everything mounted is unmounted at teardown.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


class Tmpfs:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.mounted = False

    def _mount(self, *args: str) -> None:
        res = subprocess.run(["mount", *args], capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"mount {' '.join(args)}: {res.stderr.strip()}")

    def mount(self, size_kb: int, extra: str = "") -> None:
        opts = f"size={size_kb}k" + (f",{extra}" if extra else "")
        self._mount("-t", "tmpfs", "-o", opts, "tmpfs", str(self.path))
        self.mounted = True

    def resize(self, size_kb: int) -> None:
        """Give the file system more room, as an operator freeing space would."""
        self._mount("-o", f"remount,size={size_kb}k", str(self.path))

    def read_only(self) -> None:
        self._mount("-o", "remount,ro", str(self.path))

    def free_kb(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize // 1024

    def umount(self) -> None:
        if self.mounted:
            # lazy: a process of a failed test may still hold a file open
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
            self.mounted = False


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Tmpfs]]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    made: list[Tmpfs] = []

    def make(size_kb: int, extra: str = "", at: Path | None = None) -> Tmpfs:
        p = at or tmp_path / f"tmpfs{len(made)}"
        p.mkdir()
        t = Tmpfs(p)
        try:
            t.mount(size_kb, extra)
        except RuntimeError as e:
            pytest.skip(f"cannot mount a tmpfs here: {e}")
        made.append(t)
        return t

    yield make
    for t in reversed(made):
        t.umount()
