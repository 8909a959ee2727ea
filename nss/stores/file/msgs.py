"""A channel's messages in the FILE store: the ``MsgStore`` over its
message log (``msglog.SliceLog``), with the cache of recent messages, the
limits and expiry.

Nothing per message stays in memory but a small FIFO cache of recent
message bytes (bounded per channel and for all channels together, see
``Shared.cache_touch``), so resident memory does not grow with the size of
the store.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Sequence

from nss.log import get_logger
from nss.options import ChannelLimits
from nss.stores.base import MsgStore, StoreError
from nss.stores.crypto import DecryptError
from nss.stores.file.msglog import SliceLog
from nss.stores.file.records import MSG_OVERHEAD, parse_slice_name
from nss.stores.file.recovery import SliceRecovery
from nss.stores.file.shared import MIN_CACHE, Shared

_log = get_logger()


class FileMsgStore(MsgStore):
    """Messages of one channel in ``msgs.N.dat``/``.idx`` slices."""

    def __init__(self, shared: Shared, name: str, directory: str, limits: ChannelLimits) -> None:
        super().__init__(name, limits)
        self._shared = shared
        self.dir = directory
        self._msglog = SliceLog(shared, name, directory, limits)
        self._max_age_ns = int(limits.max_age * 1e9) if limits.max_age > 0 else 0
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cache_bytes = 0
        self._cache_max = max(2 * shared.opts.read_buffer_size, MIN_CACHE)
        self._active = False
        self._closed = False
        # hit_limit at mark() (None: no mark); the log keeps the rest
        self._mark_hit: bool | None = None

    # -- interface ---------------------------------------------------------

    def store(self, seq: int, timestamp: int, data: bytes) -> None:
        ml = self._msglog
        if seq <= ml.last:
            return
        # encrypted on disk only: the cache keeps plaintext for delivery
        cipher = self.cipher
        ml.append(seq, timestamp, data if cipher is None else cipher.seal_msg(data))
        self._cache[seq] = data
        self._cache_bytes += len(data)
        self._shared.cache_total += len(data)
        self._active = True
        if ml.count > self.over_msgs or ml.bytes > self.over_bytes:
            self.apply_limits(ml.count, ml.bytes)
        if ml.bufsize == 0 or len(ml.wbuf) >= ml.bufsize:
            try:
                self._write_out()
            except OSError as e:
                raise StoreError(str(e)) from e

    def store_many(self, first: int, timestamps: Sequence[int], datas: list[bytes]) -> None:
        ml = self._msglog
        n = len(datas)
        nbytes = sum(map(len, datas))
        if (
            not n
            or first != ml.last + 1  # a gap: placeholders count too
            or self.cipher is not None
            or len(timestamps) != n
            or ml.count + n > self.over_msgs
            or ml.bytes + nbytes + n * MSG_OVERHEAD > self.over_bytes
        ):
            super().store_many(first, timestamps, datas)
            return
        # no limit reached on the way: the stores of the batch in one go
        ml.append_many(first, timestamps, datas, nbytes)
        self._cache.update(zip(range(first, first + n), datas, strict=True))
        self._cache_bytes += nbytes
        self._shared.cache_total += nbytes
        self._active = True
        if ml.bufsize == 0 or len(ml.wbuf) >= ml.bufsize:
            try:
                self._write_out()
            except OSError as e:
                raise StoreError(str(e)) from e

    def lookup(self, seq: int) -> bytes | None:
        ml = self._msglog
        if seq < ml.first or seq > ml.last:
            return None
        self._active = True
        d = self._cache.get(seq)
        if d is not None:
            return d
        try:
            return self._load(seq)
        except (OSError, StoreError) as e:
            _log.error(f'Error looking up message {seq} on channel "{self.name}": {e}')
            return None

    def lookup_many(self, first: int, last: int) -> list[bytes | None]:
        ml = self._msglog
        lo, hi = max(first, ml.first), min(last, ml.last)
        if lo > hi:
            return [None] * max(0, last - first + 1)
        self._active = True
        out: list[bytes | None] = list(map(self._cache.get, range(lo, hi + 1)))
        if None in out:
            # not cached: read the one-by-one way (which reads ahead into
            # the cache for those that follow)
            for k, d in enumerate(out):
                if d is None:
                    out[k] = self.lookup(lo + k)
        if lo > first or hi < last:
            out = [None] * (lo - first) + out + [None] * (last - hi)
        return out

    def first_sequence(self) -> int:
        return self._msglog.first

    def last_sequence(self) -> int:
        return self._msglog.last

    def timestamp_of(self, seq: int) -> int | None:
        ml = self._msglog
        if seq < ml.first or seq > ml.last:
            return None
        return ml.timestamp(seq)

    def state(self) -> tuple[int, int]:
        return self._msglog.count, self._msglog.bytes

    def _drop_oldest(self) -> bool:
        try:
            h = self._msglog.head()
        except (OSError, StoreError) as e:
            _log.error(f"Unable to remove first message: {e}")
            return False
        if h is None:
            return False
        self._uncache(self._msglog.remove_first(h[1]))
        return True

    # -- batches (see MsgStore.mark) ----------------------------------------

    def mark(self) -> None:
        self._msglog.mark()
        self._mark_hit = self.hit_limit

    def release(self) -> None:
        self._mark_hit = None
        self._msglog.release()

    def rollback(self) -> None:
        hit = self._mark_hit
        if hit is None:
            return
        self._mark_hit = None
        ml = self._msglog
        last = ml.last
        ml.rollback()
        self.hit_limit = hit
        for s in range(ml.last + 1, last + 1):
            self._uncache(s)

    # -- durability --------------------------------------------------------

    async def flush(self) -> None:
        if self._closed:
            return
        try:
            self._write_out()
            await self._msglog.fsync(force=False)
        except OSError as e:
            raise StoreError(str(e)) from e

    async def auto_sync(self) -> None:
        """Background flush + fsync regardless of ``do_sync``."""
        if self._closed:
            return
        self._write_out()
        await self._msglog.fsync(force=True)

    def _write_out(self) -> None:
        if self._msglog.write_out():
            if self._cache_bytes > self._cache_max:
                self._cache_drop(self._cache_max)
            self._shared.cache_touch(self)

    def expire(self, now_ns: int) -> float | None:
        max_age = self._max_age_ns
        if max_age <= 0:
            return None
        ml = self._msglog
        while ml.count > 0:
            try:
                h = ml.head()
            except (OSError, StoreError) as e:
                _log.error(f"Error during expiration: {e}")
                return 5.0
            if h is None:
                return None
            ts, size = h
            if now_ns - ts >= max_age:
                self._uncache(ml.remove_first(size))
            else:
                return (ts + max_age - now_ns) / 1e9
        return None

    def empty(self) -> None:
        """Remove every message; like the MEMORY store the sequence carries
        on from ``last`` in this process."""
        self._msglog.empty()
        self._cache_drop(0, everything=True)
        self.hit_limit = False

    def close(self) -> None:
        """Write and fsync what is pending (always, like Go's Close), then
        release every descriptor."""
        if self._closed:
            return
        self._closed = True
        self._msglog.close()

    def discard(self) -> None:
        """Drop everything without writing (the channel is being deleted)."""
        self._closed = True
        self._msglog.discard()
        self._cache_drop(0, everything=True)

    # -- cache -------------------------------------------------------------

    def _load(self, seq: int) -> bytes | None:
        """Read ``seq`` from its slice; the read-ahead that came with it
        goes to the cache for the next lookups."""
        payloads = self._msglog.read(seq)
        if not payloads:
            return None
        if self.cipher is not None:
            payloads = self._open_all(seq, payloads)
        cache = self._cache
        for i, payload in enumerate(payloads):
            s = seq + i
            if s not in cache:
                cache[s] = payload
                self._cache_bytes += len(payload)
                self._shared.cache_total += len(payload)
        if self._cache_bytes > self._cache_max:
            self._cache_drop(self._cache_max)
        self._shared.cache_touch(self)
        return payloads[0]

    def _open_all(self, seq: int, payloads: list[bytes]) -> list[bytes]:
        """Decrypt what was read from ``seq`` on; a record that does not
        authenticate is reported like a CRC error (file and offset) and
        never served, nor is what follows it in this read."""
        assert self.cipher is not None
        open_msg = self.cipher.open_msg
        out: list[bytes] = []
        for i, p in enumerate(payloads):
            try:
                out.append(open_msg(p))
            except DecryptError as e:
                if i:
                    break
                where = self._msglog.locate(seq)
                at = f' in "{where[0]}" at offset {where[1]}' if where else ""
                raise DecryptError(
                    f"unable to decrypt record for sequence {seq}{at}: {e}"
                ) from None
        return out

    def raw_message(self, seq: int) -> bytes | None:
        """The record of ``seq`` as stored (encrypted), read from disk."""
        payloads = self._msglog.read(seq)
        return payloads[0] if payloads else None

    def _uncache(self, seq: int) -> None:
        d = self._cache.pop(seq, None)
        if d is not None:
            self._cache_bytes -= len(d)
            self._shared.cache_total -= len(d)

    def _cache_drop(self, limit: int, everything: bool = False) -> None:
        """Evict the oldest cached messages until at most ``limit`` bytes
        remain; messages not written yet stay (they are the only copy)
        unless ``everything``."""
        cache = self._cache
        if everything:
            self._shared.cache_total -= self._cache_bytes
            cache.clear()
            self._cache_bytes = 0
            return
        fl = self._msglog.flushed_seq
        freed = 0
        target = self._cache_bytes - limit
        pop = cache.popitem
        # runs for every message under load: pop first, put back the rare
        # unwritten one rather than peek at each
        while freed < target and cache:
            k, v = pop(last=False)
            if k > fl:
                cache[k] = v
                cache.move_to_end(k, last=False)
                break
            freed += len(v)
        self._cache_bytes -= freed
        self._shared.cache_total -= freed

    def sweep_cache(self) -> None:
        """Background tick: forget cached messages of an idle channel (Go
        keeps read/written messages ~1 s after their last use)."""
        if not self._active and self._cache:
            self._cache_drop(0)
        self._active = False

    # -- recovery ----------------------------------------------------------

    def recover(self) -> None:
        """Rebuild the state from the slices on disk (stores.md §3.8), then
        re-apply count/bytes limits and expire by age. StoreError naming the
        file that failed; the store is then discarded."""
        rec = SliceRecovery(self._msglog, self._shared)
        try:
            found: list[int] = []
            with os.scandir(self.dir) as it:
                for e in it:
                    if e.is_dir(follow_symlinks=False):
                        continue
                    num = parse_slice_name(e.name)
                    if num is not None:
                        found.append(num)
            found.sort()
            slices = []
            for num in found:
                sl = rec.recover_slice(num)
                if sl is not None:
                    slices.append(sl)
            self._msglog.install(slices)
            pool = self._shared.pool
            pool.hold += 1
            try:
                self.apply_limits(self._msglog.count, self._msglog.bytes, report=False)
                if self._max_age_ns > 0 and self._msglog.count > 0:
                    self.expire(time.time_ns())
            finally:
                pool.hold -= 1
                self._msglog.close_all()
        except (OSError, StoreError) as e:
            self.discard()
            raise StoreError(
                f'unable to recover message store for [{self.name}](file: "{rec.cur_file}"): {e}'
            ) from e
