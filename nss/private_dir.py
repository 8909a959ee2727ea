"""The private temporary directory nss keeps files for its nats-server in.

The child's configuration file holds credentials (``--user``/``--pass``/
``--auth``, route and cluster passwords, the user's ``authorization``
block) and TLS paths, so it must be readable by nss's user alone: the
directory is created 0700 and every file in it 0600, whatever the umask.

When nss is SIGKILLed its clean-up never runs (the child dies with it, see
``nss.natsd``), so the directory is named after nss's pid
(``nss-<pid>-<random>``) and the next nss removes the directories whose
process is gone. A directory whose pid is alive is left alone, even if the
pid was reused by an unrelated process: a leftover is better than pulling
files from under a running server. Old-style names without a pid are not
touched, for the same reason.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import stat
import tempfile

__all__ = ["PREFIX", "make", "pid_alive", "remove_stale", "write_private"]

PREFIX = "nss-"
_NAME_RE = re.compile(r"^nss-(\d+)-[A-Za-z0-9_]+$")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (zombies count as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            state = f.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def remove_stale(base: str | None = None) -> list[str]:
    """Remove ``nss-<pid>-*`` directories of dead nss processes that belong
    to us; returns the paths removed."""
    base = base or tempfile.gettempdir()
    removed: list[str] = []
    try:
        names = os.listdir(base)
    except OSError:
        return removed
    uid = os.getuid()
    for name in names:
        m = _NAME_RE.match(name)
        if m is None or int(m.group(1)) == os.getpid():
            continue
        path = os.path.join(base, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
            continue
        if pid_alive(int(m.group(1))):
            continue
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.exists(path):
            removed.append(path)
    return removed


def make() -> str:
    """A new 0700 directory named after this process, removed at exit."""
    path = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")
    os.chmod(path, 0o700)
    atexit.register(shutil.rmtree, path, True)
    return path


def write_private(path: str, data: str) -> None:
    """Replace ``path`` with ``data``, mode 0600 from the first byte.

    Written beside and renamed over, so a reloading nats-server never reads
    half a file."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(data)
    os.replace(tmp, path)
