"""The FILE store's ``StoreLock`` (stores.md §3.9)."""

from __future__ import annotations

import errno
import fcntl
import os

from nss.stores.base import StoreError
from nss.stores.file.diskio import close_quietly
from nss.stores.lock import StoreLock

LOCK_FILE = ".rootdir.lck"


class FileLock(StoreLock):
    """POSIX record lock on ``<root>/.rootdir.lck`` (stores.md §3.9); never
    ``flock``, which a Go server would not see."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.path = os.path.join(root, LOCK_FILE)
        self._fd = -1

    def acquire(self) -> bool:
        """Never blocks: a lock held elsewhere is False at once."""
        if self._fd >= 0:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
        except (FileNotFoundError, PermissionError) as e:
            raise StoreError(str(e)) from e
        except OSError as e:
            if e.errno == errno.EROFS:
                # not a lock held by someone else: nobody can write here
                raise StoreError(
                    f'datastore "{self.root}" is on a read-only file system '
                    f"(unable to open its lock file {self.path})"
                ) from e
            return False
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EINTR, errno.ENOLCK):
                return False
            raise StoreError(str(e)) from e
        self._fd = fd
        return True

    def check(self) -> bool:
        """The lock is ours and the lock file is still the one we locked. If
        someone removed or replaced it, another server could lock the new
        file while we keep the old one, so that counts as lost. Two stats
        and a non-blocking re-lock: never blocks."""
        if self._fd < 0:
            return False
        try:
            mine = os.fstat(self._fd)
            now = os.stat(self.path)
        except OSError:
            return False
        if (mine.st_dev, mine.st_ino) != (now.st_dev, now.st_ino):
            return False
        # Re-assert the lock: a no-op for a lock we hold, but on NFS a lock
        # whose lease expired fails here (ENOLCK/EIO) instead of silently
        # letting another host in.
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def release(self) -> None:
        if self._fd < 0:
            return
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
        except OSError:
            pass
        close_quietly(self._fd)
        self._fd = -1
