"""The FILE store: the Go server's on-disk layout (stores.md §3), both ways.

A Go server must be able to take over what nss wrote and vice versa (FT
fail-over, in-place upgrade), so every byte follows the Go layout. The
package has one module per job: ``records`` (the bytes), ``diskio``
(descriptors, writes, fsync), ``shared`` (what all channels of a store
share), ``slices`` and ``msglog`` (message files), ``msgs`` (a channel's
messages), ``recovery`` (of message slices), ``subs`` (subs.dat), ``root``
(server.dat, clients.dat) and ``lock``. This module ties them together:
the channel directories, recovery of the whole store, the background work
and closing.
"""

from __future__ import annotations

import asyncio
import copy
import os
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor

from nss.log import get_logger
from nss.options import ChannelLimits, FileOptions, StoreLimits
from nss.pb import spb_pb2 as spb
from nss.stores.base import (
    ERR_NO_SRV_BUT_CHANNELS,
    ChannelStore,
    RecoveredChannel,
    RecoveredState,
    Store,
    StoreError,
)
from nss.stores.crypto import attach
from nss.stores.file.diskio import raise_nofile_limit
from nss.stores.file.lock import FileLock
from nss.stores.file.msgs import FileMsgStore
from nss.stores.file.root import ClientLog, read_server_info, write_server_info
from nss.stores.file.shared import Shared
from nss.stores.file.subs import FileSubStore

_log = get_logger()

TRUNCATE_WITNESS = ".truncate.lck"


def validate_file_options(o: FileOptions) -> None:
    """Reject bad file options with the Go texts (config.md §2.4), in the
    order Go's ``AllOptions`` checks them."""
    if o.buffer_size < 0:
        raise StoreError("buffer size value must be a positive number")
    if o.compact_interval <= 0:
        raise StoreError("compact interval value must at least be 1 seconds")
    if o.compact_frag <= 0:
        raise StoreError("compact fragmentation value must at least be 1")
    if o.compact_min_size < 0:
        raise StoreError("compact minimum file size value must be a positive number")
    if o.crc_poly <= 0 or o.crc_poly > 0xFFFFFFFF:
        raise StoreError("crc polynomial should be between 1 and 4294967295")
    if o.slice_max_msgs < 0 or o.slice_max_bytes < 0 or o.slice_max_age < 0:
        raise StoreError("slice max values must be positive numbers")
    if o.fds_limit < 0:
        raise StoreError("file descriptor limit must be a positive number")
    if o.parallel_recovery <= 0:
        raise StoreError("parallel recovery value must be at least 1")
    if o.read_buffer_size < 0:
        raise StoreError("read buffer size value must be a positive number")


class FileStore(Store):
    """The FILE store rooted at ``root_dir`` (one directory per channel)."""

    name = "FILE"

    def __init__(self, root_dir: str, limits: StoreLimits, file_opts: FileOptions) -> None:
        super().__init__(limits)
        if not root_dir:
            raise StoreError("for FILE stores, root directory must be specified")
        validate_file_options(file_opts)
        self.opts = copy.copy(file_opts)
        self.root = root_dir
        try:
            os.makedirs(root_dir, 0o777, exist_ok=True)
        except OSError as e:
            raise StoreError(f"unable to create the root directory [{root_dir}]: {e}") from e
        self._check_truncate_witness()
        raise_nofile_limit()
        self._shared = Shared(root_dir, self.opts)
        self.pool = self._shared.pool
        # the channels' stores, typed, for the background work
        self._stores: dict[str, tuple[FileMsgStore, FileSubStore]] = {}
        self._clients = ClientLog(self._shared)
        self._lock = FileLock(root_dir)
        self._bg: asyncio.Task[None] | None = None
        self._closed = False

    def _check_truncate_witness(self) -> None:
        """``file_truncate_bad_eof`` may cut records off: Go refuses two
        starts in a row with it (the first one must have fixed the files),
        by a witness file the next start without the option removes."""
        witness = os.path.join(self.root, TRUNCATE_WITNESS)
        if self.opts.truncate_bad_eof:
            try:
                os.close(os.open(witness, os.O_CREAT | os.O_EXCL | os.O_RDONLY, 0o666))
            except OSError as e:
                raise StoreError(
                    "file store should not be opened consecutively with the "
                    "TruncateUnexpectedEOF option set to true"
                ) from e
        else:
            try:
                os.remove(witness)
            except OSError:
                pass

    def lock(self) -> FileLock:
        return self._lock

    def wait_archive_scripts(self, timeout: float | None = None) -> None:
        self._shared.wait_archive_scripts(timeout)

    # -- server info, clients ------------------------------------------------

    def init(self, info: spb.ServerInfo) -> None:
        write_server_info(self._shared, info)

    def add_client(self, info: spb.ClientInfo) -> None:
        self._clients.add(info)

    def delete_client(self, client_id: str) -> None:
        self._clients.delete(client_id)

    async def flush(self) -> None:
        self._ensure_bg()
        try:
            await self._clients.sync(force=False)
        except OSError as e:
            raise StoreError(str(e)) from e

    # -- recovery ------------------------------------------------------------

    def recover(self) -> RecoveredState | None:
        self._ensure_bg()
        info = read_server_info(self._shared)
        self._clients.open()  # recover() may be called again after init()
        names = []
        with os.scandir(self.root) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    names.append(e.name)
        if info is None:
            if names:
                raise StoreError(ERR_NO_SRV_BUT_CHANNELS)
            return None
        clients = self._clients.recover()
        recovered = self._recover_channels(sorted(names))
        attach(self.crypto, (rc.channel for rc in recovered.values()))
        return RecoveredState(info=info, clients=clients, channels=recovered)

    def _recover_channels(self, names: list[str]) -> dict[str, RecoveredChannel]:
        """``parallel_recovery`` channels at a time, in a thread pool; on a
        failure the channels recovered so far are closed."""
        out: dict[str, RecoveredChannel] = {}
        self.pool.hold += 1
        try:
            if self.opts.parallel_recovery <= 1 or len(names) <= 1:
                try:
                    for n in names:
                        out[n] = self._recover_channel(n)
                except BaseException:
                    self._close_recovered(out)
                    raise
            else:
                with ThreadPoolExecutor(
                    max_workers=self.opts.parallel_recovery, thread_name_prefix="nss-recover"
                ) as ex:
                    futs: dict[Future[RecoveredChannel], str] = {
                        ex.submit(self._recover_channel, n): n for n in names
                    }
                    err: BaseException | None = None
                    for f, n in futs.items():
                        try:
                            out[n] = f.result()
                        except BaseException as e:
                            if err is None:
                                err = e
                                for g in futs:
                                    g.cancel()
                    if err is not None:
                        self._close_recovered(out)
                        raise err
        finally:
            self.pool.hold -= 1
        for name, rc in out.items():
            ms, ss = rc.channel.msgs, rc.channel.subs
            assert isinstance(ms, FileMsgStore) and isinstance(ss, FileSubStore)
            self.channels[name] = rc.channel
            self._stores[name] = (ms, ss)
        self.pool.trim()
        return out

    @staticmethod
    def _close_recovered(out: dict[str, RecoveredChannel]) -> None:
        for rc in out.values():
            rc.channel.msgs.close()
            rc.channel.subs.close()

    def _recover_channel(self, name: str) -> RecoveredChannel:
        d = os.path.join(self.root, name)
        limits = self.channel_limits(name)
        ms = FileMsgStore(self._shared, name, d, limits)
        ms.recover()
        ss = FileSubStore(self._shared, name, d, limits)
        try:
            ss.recover()
        except (OSError, StoreError) as e:
            ms.discard()
            ss.discard()
            raise StoreError(f"unable to recover subscription store for [{name}]: {e}") from e
        return RecoveredChannel(channel=ChannelStore(name, ms, ss), subscriptions=ss.recovered())

    # -- channels ------------------------------------------------------------

    def _new_channel(self, name: str, limits: ChannelLimits) -> ChannelStore:
        d = os.path.join(self.root, name)
        existed = os.path.isdir(d)
        try:
            os.makedirs(d, 0o777, exist_ok=True)
            ms = FileMsgStore(self._shared, name, d, limits)
            ss = FileSubStore(self._shared, name, d, limits)
            ss.create_file()
        except OSError as e:
            # (disk full) no half-made channel for the next start to recover
            if not existed:
                shutil.rmtree(d, ignore_errors=True)
            raise StoreError(str(e)) from e
        self._stores[name] = (ms, ss)
        self._ensure_bg()
        return ChannelStore(name, ms, ss)

    def _drop_channel(self, cs: ChannelStore) -> None:
        ms, ss = self._stores.pop(cs.name)
        ms.discard()
        ss.discard()
        self._shared.forget_cache(ms)
        try:
            shutil.rmtree(os.path.join(self.root, cs.name))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise StoreError(str(e)) from e

    # -- background work -----------------------------------------------------

    def _ensure_bg(self) -> None:
        if self._bg is not None and not self._bg.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._bg = loop.create_task(self._bg_loop())

    async def _bg_loop(self) -> None:
        """Once a second: close idle slices, forget idle caches; every
        ``auto_sync``: write and fsync whatever had activity."""
        auto = self.opts.auto_sync
        period = min(1.0, auto) if auto > 0 else 1.0
        last_sweep = last_sync = time.monotonic()
        while not self._closed:
            await asyncio.sleep(period)
            now = time.monotonic()
            if now - last_sweep >= 0.99:
                last_sweep = now
                self.pool.sweep()
                for ms, _ in list(self._stores.values()):
                    ms.sweep_cache()
            if auto > 0 and now - last_sync >= auto * 0.99:
                last_sync = now
                try:
                    for ms, ss in list(self._stores.values()):
                        await ms.auto_sync()
                        await ss.auto_sync()
                    await self._clients.sync(force=True)
                except (OSError, StoreError) as e:
                    _log.error(f"Error during auto-sync: {e}")

    # -- closing -------------------------------------------------------------

    async def close(self) -> None:
        """Flush and fsync everything (like Go's Close), stop the background
        task, wait for archive scripts and release the FT lock. The blocking
        part runs in a thread so the loop stays responsive at shutdown."""
        if self._closed:
            return
        self._closed = True
        bg = self._bg
        if bg is not None and not bg.done():
            bg.cancel()
            try:
                await bg
            except asyncio.CancelledError:
                pass
        await asyncio.to_thread(self._close_sync)

    def close_sync(self) -> None:
        """``close`` for callers without an event loop."""
        if self._closed:
            return
        self._closed = True
        if self._bg is not None:
            self._bg.cancel()
        self._close_sync()

    def _close_sync(self) -> None:
        err: BaseException | None = None
        for ms, ss in list(self._stores.values()):
            for s in (ms, ss):
                try:
                    s.close()
                except (OSError, StoreError) as e:
                    err = err or e
        try:
            self._clients.close()
        except (OSError, StoreError) as e:
            err = err or e
        self._shared.close()
        self._lock.release()
        if err is not None:
            raise StoreError(str(err))
