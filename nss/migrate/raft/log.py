"""hashicorp/raft log entries as the Go server stores them, and its snapshots.

Log store (``<cluster_log_path>/<cluster ID>/raft.log``, a BoltDB file):
bucket ``logs`` maps the big-endian uint64 index to a raft ``Log`` encoded
with go-msgpack's MsgpackHandle, a map of its field names: ``Index``,
``Term``, ``Type`` (0 command, 1 no-op, 4 barrier, 5 configuration...),
``Data`` (for a command, the Go server's ``spb.RaftOperation``),
``Extensions`` and ``AppendedAt`` (raw bytes: msgpack's 32/64/96-bit
timestamp layouts). Bucket ``channels`` maps a channel name to the
big-endian uint64 ID of its current incarnation (a channel deleted and
created again gets a new ID; operations on older IDs are stale).

Snapshots (hashicorp's FileSnapshotStore, in ``snapshots/`` beside the log
file): one directory per snapshot with ``meta.json`` (``Index``, ``Term``
...) and ``state.bin``: a little-endian uint32 length, then an
``spb.RaftSnapshot`` of that length.

The ``msgpack`` package decodes the entries; nothing here is Go's code.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import msgpack

from nss.migrate.raft.boltdb import BoltDB, BoltError
from nss.pb import spb_pb2 as spb

LOG_COMMAND = 0
LOG_FILE = "raft.log"
SNAPSHOTS_DIR = "snapshots"


class RaftLogError(Exception):
    """The Raft log or a snapshot cannot be read."""


@dataclass
class Entry:
    index: int
    term: int
    type: int
    data: bytes
    appended_at_ns: int  # 0 when the entry has none

    def operation(self) -> spb.RaftOperation:
        op = spb.RaftOperation()
        try:
            op.ParseFromString(self.data)
        except Exception as e:  # protobuf raises its own DecodeError
            raise RaftLogError(f"entry {self.index}: not a RaftOperation: {e}") from e
        return op


def decode_time(raw: object) -> int:
    """go-msgpack's time.Time: msgpack timestamp layouts as raw bytes
    (32-bit seconds; 30-bit nanoseconds + 34-bit seconds; 32-bit
    nanoseconds + 64-bit seconds). Unix nanoseconds, 0 when absent."""
    if isinstance(raw, msgpack.Timestamp):
        return raw.to_unix_nano()
    if not isinstance(raw, bytes | bytearray):
        return 0
    if len(raw) == 4:
        return struct.unpack(">I", raw)[0] * 1_000_000_000
    if len(raw) == 8:
        (v,) = struct.unpack(">Q", raw)
        return (v & 0x3FFFFFFFF) * 1_000_000_000 + (v >> 34)
    if len(raw) == 12:
        ns, sec = struct.unpack(">Iq", raw)
        return sec * 1_000_000_000 + ns
    return 0


def decode_entry(raw: bytes) -> Entry:
    try:
        m = msgpack.unpackb(raw, raw=True, strict_map_key=False)
    except Exception as e:
        raise RaftLogError(f"undecodable log entry: {e}") from e
    if not isinstance(m, dict) or b"Index" not in m:
        raise RaftLogError("log entry is not a raft Log map")
    data = m.get(b"Data") or b""
    return Entry(
        index=int(m[b"Index"]),
        term=int(m.get(b"Term") or 0),
        type=int(m.get(b"Type") or 0),
        data=bytes(data),
        appended_at_ns=decode_time(m.get(b"AppendedAt")),
    )


@dataclass
class Snapshot:
    index: int
    term: int
    state: spb.RaftSnapshot


class RaftLog:
    """A stopped Go node's Raft directory: the one holding ``raft.log``
    (``<cluster_log_path>/<cluster ID>``) or its parent."""

    def __init__(self, directory: str) -> None:
        self.dir = _find_log_dir(directory)
        try:
            self.db = BoltDB(os.path.join(self.dir, LOG_FILE))
        except (OSError, BoltError, struct.error) as e:
            raise RaftLogError(f"{self.dir}/{LOG_FILE}: {e}") from e

    def channel_ids(self) -> dict[str, int]:
        out = {}
        for k, v in self.db.items(b"channels"):
            if len(v) == 8:
                out[k.decode()] = struct.unpack(">Q", v)[0]
        return out

    def entries(self, after: int = 0) -> Iterator[Entry]:
        """Entries with an index above ``after``, in index order."""
        for k, v in self.db.items(b"logs"):
            if len(k) == 8 and struct.unpack(">Q", k)[0] <= after:
                continue
            yield decode_entry(v)

    def first_index(self) -> int:
        for k, _ in self.db.items(b"logs"):
            return struct.unpack(">Q", k)[0]
        return 0

    def latest_snapshot(self) -> Snapshot | None:
        """The newest snapshot (highest term, then index), or None."""
        sdir = os.path.join(self.dir, SNAPSHOTS_DIR)
        try:
            names = os.listdir(sdir)
        except FileNotFoundError:
            return None
        best: tuple[int, int, str] | None = None
        for n in names:
            meta = os.path.join(sdir, n, "meta.json")
            try:
                with open(meta) as f:
                    m = json.load(f)
            except (OSError, ValueError):
                continue  # an unfinished snapshot (".tmp"): raft ignores it too
            key = (int(m.get("Term", 0)), int(m.get("Index", 0)), n)
            if best is None or key > best:
                best = key
        if best is None:
            return None
        term, index, name = best
        return Snapshot(index, term, read_snapshot(os.path.join(sdir, name, "state.bin")))


def read_snapshot(path: str) -> spb.RaftSnapshot:
    try:
        with open(path, "rb") as f:
            body = f.read()
    except OSError as e:
        raise RaftLogError(f"snapshot {path}: {e}") from e
    snap = spb.RaftSnapshot()
    if len(body) < 4:
        return snap  # Go's Restore treats an empty snapshot as no state
    (size,) = struct.unpack_from("<I", body, 0)
    if 4 + size > len(body):
        raise RaftLogError(f"snapshot {path}: truncated ({len(body) - 4} of {size} bytes)")
    try:
        snap.ParseFromString(body[4 : 4 + size])
    except Exception as e:
        raise RaftLogError(f"snapshot {path}: not a RaftSnapshot: {e}") from e
    return snap


def _find_log_dir(directory: str) -> str:
    """``--raft-log`` may name the node's ``cluster_log_path`` (which holds
    one directory per cluster ID) or the directory of ``raft.log`` itself."""
    if os.path.isfile(os.path.join(directory, LOG_FILE)):
        return directory
    try:
        subs = [
            os.path.join(directory, n)
            for n in sorted(os.listdir(directory))
            if os.path.isfile(os.path.join(directory, n, LOG_FILE))
        ]
    except OSError as e:
        raise RaftLogError(f"{directory}: {e}") from e
    if len(subs) == 1:
        return subs[0]
    if not subs:
        raise RaftLogError(f"{directory}: no {LOG_FILE} there nor in a sub-directory")
    raise RaftLogError(
        f"{directory}: several clusters' logs ({', '.join(os.path.basename(s) for s in subs)}): "
        "name the one to import"
    )
