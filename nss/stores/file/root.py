"""The files of the store root: ``server.dat`` and ``clients.dat``
(stores.md §3.3, §3.4)."""

from __future__ import annotations

import math
import os
import time

from google.protobuf.message import DecodeError

from nss.log import get_logger
from nss.pb import spb_pb2 as spb
from nss.stores.base import StoreError
from nss.stores.file.diskio import (
    SyncState,
    append_records,
    close_quietly,
    open_store_file,
    rewrite_file,
)
from nss.stores.file.records import (
    CLI_REC_ADD,
    CLI_REC_DEL,
    REC_HDR,
    REC_HEADER_SIZE,
    VERSION_SIZE,
    BadRecord,
    RecordReader,
)
from nss.stores.file.shared import Shared

_log = get_logger()

SERVER_FILE = "server.dat"
CLIENTS_FILE = "clients.dat"


def write_server_info(shared: Shared, info: spb.ServerInfo) -> None:
    """Replace the one record of server.dat, durably."""
    path = os.path.join(shared.root, SERVER_FILE)
    payload = info.SerializeToString()
    try:
        fd = open_store_file(path)
        try:
            os.ftruncate(fd, VERSION_SIZE)
            rec = REC_HDR.pack(len(payload), shared.crc(payload)) + payload
            append_records(fd, rec, VERSION_SIZE, path)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        raise StoreError(str(e)) from e


def read_server_info(shared: Shared) -> spb.ServerInfo | None:
    """The record of server.dat; None when the file holds none yet."""
    path = os.path.join(shared.root, SERVER_FILE)
    try:
        fd = open_store_file(path)
    except (OSError, StoreError) as e:
        raise StoreError(f'unable to recover server file "{path}": {e}') from e
    try:
        rr = RecordReader(fd, False, shared.crc, shared.opts.do_crc)
        try:
            r = rr.next()
        except BadRecord as e:
            _log.error(f'Server file "{path}" corrupted: {e.detail}')
            _log.error("Follow instructions in documentation in order to recover from this")
            raise StoreError(f'unable to recover server file "{path}": {e.detail}') from e
        if r is None:
            return None
        size = os.fstat(fd).st_size
        expected = VERSION_SIZE + REC_HEADER_SIZE + len(r[1])
        if size != expected:
            raise StoreError(
                f'unable to recover server file "{path}": incorrect file size, '
                f"expected {expected} bytes, got {size} bytes"
            )
        try:
            return spb.ServerInfo.FromString(r[1])
        except DecodeError as e:
            raise StoreError(f'unable to recover server file "{path}": {e}') from e
    finally:
        os.close(fd)


class ClientLog:
    """clients.dat: an add record per connected client, a delete record when
    it goes, compacted once mostly deletes. The live clients stay in memory
    because recovery returns them and compaction rewrites them."""

    def __init__(self, shared: Shared) -> None:
        self._shared = shared
        self.path = os.path.join(shared.root, CLIENTS_FILE)
        self.clients: dict[str, spb.ClientInfo] = {}
        self._fd = -1
        self._off = VERSION_SIZE
        self._buf = bytearray()
        self._del_recs = 0
        self._file_size = 0
        self._compact_ts = -math.inf
        self._sync = SyncState()

    def open(self) -> None:
        """(Re)open the file for recovery: the store recovers again after
        ``init`` when channels exist without server info."""
        close_quietly(self._fd)
        self._fd = -1
        self.clients.clear()
        self._del_recs = self._file_size = 0
        try:
            self._fd = open_store_file(self.path)
        except (OSError, StoreError) as e:
            raise StoreError(f'unable to recover client file "{self.path}": {e}') from e
        self._off = os.fstat(self._fd).st_size

    def recover(self) -> list[spb.ClientInfo]:
        """Replay the opened file."""
        try:
            self._replay()
        except (OSError, StoreError) as e:
            raise StoreError(f'unable to recover client file "{self.path}": {e}') from e
        return list(self.clients.values())

    def _replay(self) -> None:
        fd = self._fd
        sh = self._shared
        rr = RecordReader(fd, True, sh.crc, sh.opts.do_crc)
        while True:
            off = rr.offset
            try:
                r = rr.next()
            except BadRecord as e:
                sh.end_of_records(self.path, fd, e)
                break
            if r is None:
                break
            t, payload = r
            self._file_size += REC_HEADER_SIZE + len(payload)
            try:
                if t == CLI_REC_ADD:
                    ci = spb.ClientInfo.FromString(payload)
                    self.clients[ci.ID] = ci
                elif t == CLI_REC_DEL:
                    cd = spb.ClientDelete.FromString(payload)
                    self.clients.pop(cd.ID, None)
                    self._del_recs += 1
                else:
                    raise StoreError(f"invalid client record type: {t}")
            except DecodeError as e:
                raise StoreError(f"{e} (offset {off})") from e
        self._off = os.fstat(fd).st_size

    def add(self, info: spb.ClientInfo) -> None:
        self._record(CLI_REC_ADD, info.SerializeToString())
        c = spb.ClientInfo()
        c.CopyFrom(info)
        self.clients[info.ID] = c

    def delete(self, client_id: str) -> None:
        self._record(CLI_REC_DEL, spb.ClientDelete(ID=client_id).SerializeToString())
        self.clients.pop(client_id, None)
        self._del_recs += 1
        if self._should_compact():
            self._compact()

    async def sync(self, force: bool) -> None:
        """Write what is buffered; fsync with ``do_sync`` (or ``force``:
        the periodic auto-sync)."""
        self._write_out()
        if (force or self._shared.opts.do_sync) and self._sync.dirty():
            await self._sync.sync(self._sync_fds, self._shared.executor())

    def close(self) -> None:
        self._write_out()
        if self._fd >= 0:
            if self._sync.dirty():
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1

    def _record(self, rtype: int, payload: bytes) -> None:
        sh = self._shared
        rec = REC_HDR.pack((rtype << 24) | len(payload), sh.crc(payload)) + payload
        self._file_size += len(rec)
        self._buf += rec
        if sh.opts.buffer_size == 0 or len(self._buf) >= sh.opts.buffer_size:
            self._write_out()

    def _write_out(self) -> None:
        if not self._buf:
            return
        try:
            if self._fd < 0:
                self._fd = open_store_file(self.path)
                self._off = os.fstat(self._fd).st_size
            append_records(self._fd, self._buf, self._off, self.path)
        except OSError as e:
            raise StoreError(str(e)) from e
        self._off += len(self._buf)
        self._buf = bytearray()
        self._sync.written += 1

    def _sync_fds(self) -> list[int]:
        return [os.dup(self._fd)]

    def _should_compact(self) -> bool:
        o = self._shared.opts
        if not o.compact_enabled:
            return False
        if o.compact_min_size > 0 and self._file_size < o.compact_min_size:
            return False
        frag = self._del_recs * 100 // (self._del_recs + len(self.clients))
        if frag < o.compact_frag:
            return False
        return time.monotonic() - self._compact_ts >= o.compact_interval

    def _compact(self) -> None:
        """Rewrite the live clients into a temporary ``clients.dat…`` file
        in the root and rename it over clients.dat."""
        sh = self._shared
        out = bytearray()
        for ci in self.clients.values():
            p = ci.SerializeToString()
            out += REC_HDR.pack((CLI_REC_ADD << 24) | len(p), sh.crc(p)) + p
        if not rewrite_file(sh.root, CLIENTS_FILE, self.path, out):
            return
        close_quietly(self._fd)
        self._fd = open_store_file(self.path)
        self._off = VERSION_SIZE + len(out)
        self._buf = bytearray()
        self._del_recs = 0
        self._file_size = len(out)
        self._compact_ts = time.monotonic()
        self._sync.synced = self._sync.written
