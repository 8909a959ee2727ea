"""What every channel of one FILE store shares.

The options and CRC, the descriptor pool, the fsync threads, the budget of
all channels' message caches, the archive scripts of removed slices, and
what recovery does with a damaged record. The channel stores get this
object, not the ``FileStore``: they need these services, not the store.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from nss.log import get_logger
from nss.options import FileOptions
from nss.stores.base import StoreError
from nss.stores.file.diskio import FdPool, PairedFsync
from nss.stores.file.records import PARTIAL, ZERO, BadRecord, first_data_after, make_crc

_log = get_logger()

MIN_CACHE = 1024 * 1024
# All channels' caches together: read-ahead on many channels at once must not
# make memory grow with the number of channels (Go bounds it by a 1 s TTL only).
CACHE_BUDGET = 64 * 1024 * 1024
BAK_SUFFIX = ".bak"


class CachedMsgs(Protocol):
    """A channel's message cache, as the shared budget sees it."""

    _cache_bytes: int

    def _cache_drop(self, limit: int, everything: bool = False) -> None: ...


def warn_zero_padding(path: str, fd: int, offset: int) -> None:
    """Zeros where a record header was expected end the log. Behind a plain
    pre-allocated tail there is nothing; data behind the zeros means records
    were lost in the middle (a write that never reached the disk) and the
    ones after them are dropped with the tail, which the operator must
    hear about: for subs.dat those are acks, whose messages come back as
    redeliveries."""
    at = first_data_after(fd, offset)
    if at >= 0:
        size = os.fstat(fd).st_size
        _log.warning(
            f'File "{path}" has zero padding at offset {offset} with data behind it '
            f"(from offset {at}, {size - at} bytes up to the end): the records after "
            f"the padding cannot be located and are dropped, the file is truncated "
            f"at offset {offset}"
        )


def dump(data: bytes) -> None:
    """Hex dump of a damaged record in the log, 20 bytes a line like Go."""
    for i in range(0, min(len(data), 400), 20):
        part = data[i : i + 20]
        txt = "".join(chr(c) if 32 <= c <= 128 else "." for c in part)
        _log.error(f"{part.hex(' '):<59} - {txt}")


class Shared:
    """The services of one FILE store rooted at ``root``."""

    def __init__(self, root: str, opts: FileOptions) -> None:
        self.root = root
        self.opts = opts
        self.crc = make_crc(opts.crc_poly)
        self.pool = FdPool(opts.fds_limit)
        self.cache_total = 0
        self.cache_budget = max(CACHE_BUDGET, 4 * max(2 * opts.read_buffer_size, MIN_CACHE))
        self._cached: OrderedDict[CachedMsgs, None] = OrderedDict()  # LRU of caches
        self._executor: ThreadPoolExecutor | None = None
        self.paired_fsync = PairedFsync()  # a commit's .dat and .idx
        self._archivers: list[threading.Thread] = []
        self._archivers_lock = threading.Lock()

    def executor(self) -> ThreadPoolExecutor:
        """Threads for fsync: the loop never waits on the disk."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="nss-fsync")
        return self._executor

    def end_of_records(self, path: str, fd: int, e: BadRecord) -> None:
        """Where recovery stopped reading ``path``: a zero-filled tail (space
        allocated but never written before a crash) is cut off; anything
        else goes to ``bad_record``."""
        if e.kind == ZERO:
            warn_zero_padding(path, fd, e.offset)
            os.ftruncate(fd, e.offset)
        else:
            self.bad_record(path, fd, e)

    def bad_record(self, path: str, fd: int, e: BadRecord) -> None:
        """A truncated or corrupt record met during recovery: log it with a
        dump like Go, then truncate the file there if ``truncate_bad_eof``,
        else fail naming the file and the offset."""
        if e.kind == PARTIAL:
            _log.error(f'Unexpected EOF for file "{path}"')
            if not self.opts.truncate_bad_eof:
                _log.error(
                    f'It is recommended that you make a copy of the whole datastore "{self.root}".'
                )
                _log.error(
                    "Restart with the file_truncate_bad_eof option to truncate this file "
                    f"to this offset: {e.offset}."
                )
                _log.error(
                    "Dataloss may occur. Details about the first corrupted record follows..."
                )
        else:
            _log.error(f'Corrupted record in file "{path}": {e.detail}')
        try:
            raw = os.pread(fd, 400, e.offset)
            _log.error("Record bytes:")
            dump(raw)
        except OSError:  # pragma: no cover
            pass
        if self.opts.truncate_bad_eof:
            os.ftruncate(fd, e.offset)
            _log.notice(f'File "{path}" has been truncated to offset: {e.offset}')
            _log.notice("Recovery resumes...")
            return
        raise StoreError(f'{e.detail} (file "{path}", offset {e.offset})')

    def run_archive_script(self, channel: str, dat: str, idx: str) -> None:
        """Run ``slice_archive_script <channel> <dat.bak> <idx.bak>`` in the
        background; the script owns (and must remove) the files."""
        script = self.opts.slice_archive_script

        def run() -> None:
            try:
                p = subprocess.run(
                    [script, channel, dat, idx],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    check=False,
                )
            except OSError as e:
                _log.notice(f'Error invoking archive script "{script}": {e} (output=)')
                return
            out = p.stdout.decode(errors="replace")
            if p.returncode != 0:
                _log.notice(
                    f'Error invoking archive script "{script}": exit status {p.returncode} '
                    f"(output={out})"
                )
            else:
                _log.notice(f"Output of archive script for {channel} ({dat} and {idx}): {out}")

        t = threading.Thread(target=run, name="nss-archive", daemon=True)
        with self._archivers_lock:  # recovery threads remove slices too
            self._archivers = [a for a in self._archivers if a.is_alive()]
            self._archivers.append(t)
        t.start()

    def cache_touch(self, ms: CachedMsgs) -> None:
        """``ms`` just used its cache: most recently used; over the global
        budget, the least recently used channels lose their cached messages
        (down to 3/4 of the budget, so this does not run on every call)."""
        cached = self._cached
        if ms._cache_bytes:
            cached[ms] = None
            cached.move_to_end(ms)
        if self.cache_total <= self.cache_budget:
            return
        target = self.cache_budget * 3 // 4
        for other in list(cached):
            if self.cache_total <= target:
                break
            if other is ms:
                continue
            other._cache_drop(0)
            if not other._cache_bytes:
                del cached[other]

    def wait_archive_scripts(self, timeout: float | None = None) -> None:
        with self._archivers_lock:
            threads = list(self._archivers)
        for t in threads:
            t.join(timeout)


    def dispose_slice(self, channel: str, dat: str, idx: str) -> None:
        """Files of a removed slice: handed to ``slice_archive_script``
        (renamed ``.bak``) when there is one, else deleted."""
        script = self.opts.slice_archive_script
        if script:
            dat_bak, idx_bak = dat + BAK_SUFFIX, idx + BAK_SUFFIX
            try:
                os.rename(dat, dat_bak)
                try:
                    os.rename(idx, idx_bak)
                except OSError:
                    os.remove(dat_bak)
                    raise
            except OSError as e:
                _log.error(f"Unable to rename slice files for archiving: {e}")
            else:
                self.run_archive_script(channel, dat_bak, idx_bak)
                return
        for p in (dat, idx):
            try:
                os.remove(p)
            except OSError:
                pass

    def forget_cache(self, ms: CachedMsgs) -> None:
        """``ms`` is gone (its channel was deleted)."""
        self._cached.pop(ms, None)

    def close(self) -> None:
        """Wait for archive scripts and the fsync threads (closing)."""
        self.wait_archive_scripts()
        self.paired_fsync.close()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
