"""FILE store: Go byte layout both ways, recovery, damage, slices, compaction.

What nss writes is checked with ``GoLayout``, a minimal reader written here
from stores.md §3 alone (struct + zlib, no store code), so a layout mistake in
the store cannot be mirrored by the check. What Go wrote is the fixture made
by nats-streaming-server v0.25.6 (tests/fixtures/go-v0.25.6/filestore).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from dataclasses import replace
from pathlib import Path

import pytest

from nss.options import ChannelLimits, FileOptions, StoreLimits
from nss.pb import protocol_pb2 as pb
from nss.pb import spb_pb2 as spb
from nss.stores.base import ERR_NO_SRV_BUT_CHANNELS, ERR_NOT_FOUND, StoreError
from nss.stores.file import FileStore
from nss.stores.file.records import make_crc
from nss.units import friendly_bytes

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "go-v0.25.6" / "filestore"
FAST = FileOptions(do_sync=False)


# ---------------------------------------------------------------------------
# An independent reader of the Go layout (stores.md §3.2-§3.6)


class GoLayout:
    """Parses a FILE store directory the way the Go server does."""

    def __init__(self, root: str | Path, crc=zlib.crc32) -> None:
        self.root = Path(root)
        self.crc = crc

    def body(self, path: Path) -> bytes:
        data = path.read_bytes()
        assert data[:4] == b"\x01\x00\x00\x00", f"{path}: bad version {data[:4]!r}"
        return data

    def records(self, path: Path, typed: bool) -> list[tuple[int, int, bytes]]:
        """(offset, type, payload) of every record; CRC and sizes checked."""
        data = self.body(path)
        out = []
        off = 4
        while off < len(data):
            word, crc = struct.unpack_from("<II", data, off)
            rtype, size = (word >> 24, word & 0xFFFFFF) if typed else (0, word)
            payload = data[off + 8 : off + 8 + size]
            assert len(payload) == size, f"{path}: short record at {off}"
            assert self.crc(payload) == crc, f"{path}: bad crc at {off}"
            out.append((off, rtype, payload))
            off += 8 + size
        return out

    def index(self, path: Path) -> list[tuple[int, int, int, int]]:
        data = self.body(path)
        assert (len(data) - 4) % 32 == 0, f"{path}: partial index record"
        out = []
        for off in range(4, len(data), 32):
            seq, moff, ts, size, crc = struct.unpack_from("<QQqII", data, off)
            assert self.crc(data[off : off + 28]) == crc, f"{path}: bad index crc at {off}"
            out.append((seq, moff, ts, size))
        return out

    def server_info(self) -> spb.ServerInfo:
        recs = self.records(self.root / "server.dat", typed=False)
        assert len(recs) == 1
        size = (self.root / "server.dat").stat().st_size
        assert size == 4 + 8 + len(recs[0][2])
        return spb.ServerInfo.FromString(recs[0][2])

    def clients(self) -> dict[str, spb.ClientInfo]:
        out: dict[str, spb.ClientInfo] = {}
        for _, t, p in self.records(self.root / "clients.dat", typed=True):
            if t == 1:
                c = spb.ClientInfo.FromString(p)
                out[c.ID] = c
            else:
                assert t == 2
                out.pop(spb.ClientDelete.FromString(p).ID, None)
        return out

    def subs(self, channel: str) -> dict[int, tuple[spb.SubState, set[int]]]:
        out: dict[int, tuple[spb.SubState, set[int]]] = {}
        for _, t, p in self.records(self.root / channel / "subs.dat", typed=True):
            if t in (1, 2):
                s = spb.SubState.FromString(p)
                pend = out[s.ID][1] if (t == 2 and s.ID in out) else set()
                out[s.ID] = (s, pend)
            elif t == 3:
                out.pop(spb.SubStateDelete.FromString(p).ID, None)
            else:
                u = spb.SubStateUpdate.FromString(p)
                if u.ID in out:
                    st, pend = out[u.ID]
                    if t == 4:
                        pend.discard(u.seqno)
                    else:
                        assert t == 5
                        pend.add(u.seqno)
                        st.lastSent = max(st.lastSent, u.seqno)
        return out

    def slices(self, channel: str) -> list[int]:
        names = os.listdir(self.root / channel)
        return sorted(int(n[5:-4]) for n in names if n.startswith("msgs.") and n.endswith(".dat"))

    def messages(self, channel: str) -> dict[int, pb.MsgProto]:
        """Every message of every slice, each index entry checked against
        the record it points to."""
        out: dict[int, pb.MsgProto] = {}
        for n in self.slices(channel):
            dat = self.root / channel / f"msgs.{n}.dat"
            recs = {off: p for off, _, p in self.records(dat, typed=False)}
            idx = self.index(self.root / channel / f"msgs.{n}.idx")
            assert len(idx) == len(recs), f"{dat}: index and data disagree"
            for seq, off, ts, size in idx:
                m = pb.MsgProto.FromString(recs[off])
                assert (m.sequence, m.timestamp, len(recs[off])) == (seq, ts, size)
                out[seq] = m
        return out


# ---------------------------------------------------------------------------
# Helpers


def msg(seq: int, channel: str = "foo", data: bytes = b"", ts: int | None = None) -> bytes:
    ts = ts if ts is not None else 1_000_000_000 * seq
    return pb.MsgProto(sequence=seq, subject=channel, data=data, timestamp=ts).SerializeToString()


def put(ms, seq: int, channel: str = "foo", data: bytes = b"x", ts: int | None = None) -> None:
    ts = ts if ts is not None else 1_000_000_000 * seq
    ms.store(seq, ts, msg(seq, channel, data, ts))


def info() -> spb.ServerInfo:
    return spb.ServerInfo(ClusterID="test", Discovery="_STAN.discover.test", Publish="_STAN.pub.x")


def fresh(root: Path, limits: StoreLimits | None = None, **opts) -> FileStore:
    fs = FileStore(str(root), limits or StoreLimits(), replace(FAST, **opts))
    assert fs.recover() is None
    fs.init(info())
    return fs


def reopen(root: Path, limits: StoreLimits | None = None, **opts):
    fs = FileStore(str(root), limits or StoreLimits(), replace(FAST, **opts))
    rs = fs.recover()
    assert rs is not None
    return fs, rs


def copy_fixture(tmp_path: Path) -> Path:
    """The Go datastore, writable (recovery may rewrite files)."""
    dst = tmp_path / "datastore"
    shutil.copytree(FIXTURE / "datastore", dst, copy_function=shutil.copyfile)
    for d, _, files in os.walk(dst):
        os.chmod(d, 0o755)
        for f in files:
            os.chmod(os.path.join(d, f), 0o644)
    return dst


def fixture_limits() -> StoreLimits:
    """The limits the fixture was written with (its limits.conf)."""
    return StoreLimits(per_channel={"limits.chan": ChannelLimits(max_msgs=50)})


# ---------------------------------------------------------------------------
# Layout written by nss, read by the Go rules


async def test_layout_written_by_nss_is_go_layout(tmp_path: Path) -> None:
    root = tmp_path / "s"
    fs = fresh(root)
    si = info()
    # server.dat: exactly version + one untyped record
    payload = si.SerializeToString()
    expected = b"\x01\x00\x00\x00" + struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
    assert (root / "server.dat").read_bytes() == expected

    c1 = spb.ClientInfo(ID="c1", HbInbox="hb1", ConnID=b"conn1", Protocol=1, PingInterval=5)
    fs.add_client(c1)
    fs.add_client(spb.ClientInfo(ID="c2", HbInbox="hb2"))
    fs.delete_client("c2")
    await fs.flush()
    recs = GoLayout(root).records(root / "clients.dat", typed=True)
    assert [t for _, t, _ in recs] == [1, 1, 2]
    word = struct.unpack_from("<I", (root / "clients.dat").read_bytes(), 4)[0]
    assert word == (1 << 24) | len(c1.SerializeToString())
    assert GoLayout(root).clients() == {"c1": c1}

    cs = fs.create_channel("foo.bar")
    assert (root / "foo.bar" / "subs.dat").read_bytes() == b"\x01\x00\x00\x00"
    for s in range(1, 6):
        put(cs.msgs, s, "foo.bar", data=b"p" * s)
    sub = spb.SubState(clientID="c1", inbox="in", ackInbox="ack", durableName="dur")
    sub.isDurable = True
    cs.subs.create_sub(sub)
    cs.subs.add_seq_pending(sub.ID, 1)
    cs.subs.add_seq_pending(sub.ID, 2)
    cs.subs.ack_seq_pending(sub.ID, 1)
    await cs.msgs.flush()
    await cs.subs.flush()

    g = GoLayout(root)
    msgs = g.messages("foo.bar")
    assert sorted(msgs) == [1, 2, 3, 4, 5]
    assert msgs[3].data == b"ppp" and msgs[3].subject == "foo.bar"
    # index offsets are record positions: 4, then consecutive records
    idx = g.index(root / "foo.bar" / "msgs.1.idx")
    assert idx[0][1] == 4
    assert idx[1][1] == 4 + 8 + idx[0][3]
    # FILE byte accounting: MsgProto size + 40
    assert cs.msgs.state() == (5, sum(i[3] for i in idx) + 5 * 40)
    subs = g.subs("foo.bar")
    st, pend = subs[sub.ID]
    assert st.durableName == "dur" and st.lastSent == 2 and pend == {2}
    # the typed records are exactly (type << 24 | size)
    raw = [t for _, t, _ in g.records(root / "foo.bar" / "subs.dat", typed=True)]
    assert raw == [1, 5, 5, 4]
    await fs.close()


async def test_reopen_round_trip(tmp_path: Path) -> None:
    root = tmp_path / "s"
    fs = fresh(root)
    fs.add_client(spb.ClientInfo(ID="alive", HbInbox="hb", ConnID=b"x"))
    fs.add_client(spb.ClientInfo(ID="gone", HbInbox="hb"))
    fs.delete_client("gone")
    cs = fs.create_channel("orders")
    for s in range(1, 11):
        put(cs.msgs, s, "orders")
    online = spb.SubState(clientID="alive", inbox="i1", ackInbox="a1", maxInFlight=5)
    durable = spb.SubState(
        clientID="alive", inbox="i2", ackInbox="a2", durableName="d", isDurable=True
    )
    shadow = spb.SubState(clientID="", qGroup="dq:grp", inbox="i3", ackInbox="a3", isDurable=True)
    removed = spb.SubState(clientID="alive", inbox="i4", ackInbox="a4")
    for s in (online, durable, shadow, removed):
        cs.subs.create_sub(s)
    for seq in (1, 2, 3):
        cs.subs.add_seq_pending(durable.ID, seq)
    cs.subs.ack_seq_pending(durable.ID, 2)
    durable.isClosed = True
    durable.lastSent = 3
    cs.subs.update_sub(durable)
    cs.subs.add_seq_pending(shadow.ID, 7)
    cs.subs.ack_seq_pending(shadow.ID, 7)
    cs.subs.delete_sub(removed.ID)
    await fs.flush()
    await cs.msgs.flush()
    await cs.subs.flush()
    await fs.close()

    fs2, rs = reopen(root)
    assert rs.info == info()
    assert {c.ID: c for c in rs.clients} == {
        "alive": spb.ClientInfo(ID="alive", HbInbox="hb", ConnID=b"x")
    }
    rc = rs.channels["orders"]
    assert rc.channel.msgs.first_sequence() == 1 and rc.channel.msgs.last_sequence() == 10
    got = {r.sub.ID: r for r in rc.subscriptions}
    assert set(got) == {online.ID, durable.ID, shadow.ID}
    assert got[durable.ID].sub.isClosed and got[durable.ID].sub.lastSent == 3
    assert got[durable.ID].pending == {1, 3}
    assert got[shadow.ID].sub.clientID == "" and got[shadow.ID].sub.lastSent == 7
    assert got[shadow.ID].pending == set()
    assert got[online.ID].sub.maxInFlight == 5
    # sub IDs continue after the highest ever seen (the deleted one included)
    nxt = spb.SubState(clientID="alive")
    rc.channel.subs.create_sub(nxt)
    assert nxt.ID == removed.ID + 1
    # next message continues the sequence
    put(rc.channel.msgs, 11, "orders")
    await rc.channel.msgs.flush()
    assert pb.MsgProto.FromString(rc.channel.msgs.lookup(11)).sequence == 11
    await fs2.close()
    assert sorted(GoLayout(root).messages("orders")) == list(range(1, 12))


def test_no_state_and_errors_at_open(tmp_path: Path) -> None:
    root = tmp_path / "s"
    fs = FileStore(str(root), StoreLimits(), FAST)
    assert fs.recover() is None
    fs.close_sync()
    (root / "chan").mkdir()
    fs = FileStore(str(root), StoreLimits(), FAST)
    with pytest.raises(StoreError, match=ERR_NO_SRV_BUT_CHANNELS):
        fs.recover()
    fs.init(info())
    rs = fs.recover()
    assert rs is not None and "chan" in rs.channels
    fs.close_sync()
    # server.dat with trailing garbage
    with open(root / "server.dat", "ab") as f:
        f.write(b"junk")
    with pytest.raises(StoreError, match="incorrect file size, expected .* got .* bytes"):
        FileStore(str(root), StoreLimits(), FAST).recover()
    # unsupported / unreadable versions
    (root / "server.dat").write_bytes(b"\x02\x00\x00\x00")
    with pytest.raises(StoreError, match=r"unsupported file version: 2 \(supports \[1..1\]\)"):
        FileStore(str(root), StoreLimits(), FAST).recover()
    # never completed (issue 9: recovered as empty, not "unable to verify
    # file version: EOF"): no server state, and the header is written
    for short in (b"", b"\x01\x00"):
        (root / "server.dat").write_bytes(short)
        with pytest.raises(StoreError, match=ERR_NO_SRV_BUT_CHANNELS):
            FileStore(str(root), StoreLimits(), FAST).recover()
        assert (root / "server.dat").read_bytes() == b"\x01\x00\x00\x00"
    with pytest.raises(StoreError, match="root directory must be specified"):
        FileStore("", StoreLimits(), FAST)


def test_parallel_recovery_failure_reports_the_channel(tmp_path: Path) -> None:
    root = tmp_path / "s"
    fs = fresh(root)
    for i in range(6):
        put(fs.create_channel(f"c{i}").msgs, 1, f"c{i}")
    fs.close_sync()
    (root / "c3" / "msgs.1.idx").unlink()
    with open(root / "c3" / "msgs.1.dat", "ab") as f:
        f.write(b"\x05\x00\x00")
    fs = FileStore(str(root), StoreLimits(), replace(FAST, parallel_recovery=4))
    with pytest.raises(StoreError, match=r"message store for \[c3\].*unexpected EOF"):
        fs.recover()
    assert fs.pool.count == 0  # the channels recovered meanwhile were closed


def test_invalid_slice_name_and_record_type(tmp_path: Path) -> None:
    root = tmp_path / "s"
    fs = fresh(root)
    fs.create_channel("c")
    fs.close_sync()
    (root / "c" / "msgs.x1.dat").write_bytes(b"\x01\x00\x00\x00")
    fs = FileStore(str(root), StoreLimits(), FAST)
    with pytest.raises(StoreError, match="message log has an invalid name: msgs.x1.dat"):
        fs.recover()
    (root / "c" / "msgs.x1.dat").unlink()
    payload = b"\x08\x01"
    rec = struct.pack("<II", (9 << 24) | len(payload), zlib.crc32(payload)) + payload
    with open(root / "c" / "subs.dat", "ab") as f:
        f.write(rec)
    with pytest.raises(
        StoreError, match=r"subscription store for \[c\]: unexpected record type: 9"
    ):
        FileStore(str(root), StoreLimits(), FAST).recover()


# ---------------------------------------------------------------------------
# The Go fixture


def test_go_fixture_recovered_per_manifest(tmp_path: Path) -> None:
    manifest = json.loads((FIXTURE / "manifest.json").read_text())
    root = copy_fixture(tmp_path)
    for par in (1, 3):
        fs = FileStore(str(root), fixture_limits(), replace(FAST, parallel_recovery=par))
        rs = fs.recover()
        assert rs is not None
        assert rs.info.ClusterID == manifest["cluster"]
        assert sorted(c.ID for c in rs.clients) == sorted(manifest["registered_clients"])
        assert sorted(rs.channels) == sorted(manifest["channels"])
        for name, exp in manifest["channels"].items():
            ms = rs.channels[name].channel.msgs
            assert (ms.first_sequence(), ms.last_sequence()) == (exp["first"], exp["last"])
            hashes = []
            for seq in range(exp["first"], exp["last"] + 1):
                m = pb.MsgProto.FromString(ms.lookup(seq))
                assert m.sequence == seq and m.subject == name
                hashes.append(hashlib.sha256(m.data).hexdigest())
            assert hashes == exp["sha256"], name
            assert ms.lookup(exp["first"] - 1) is None and ms.lookup(exp["last"] + 1) is None
        for d in manifest["durables"]:
            subs = rs.channels[d["channel"]].subscriptions
            (r,) = [r for r in subs if r.sub.durableName == d["durable"]]
            assert r.sub.clientID == d["clientID"] and r.sub.isClosed
            assert r.pending == set(d["unacked_sent"])
            assert r.sub.lastSent == max(d["unacked_sent"])
        for q in manifest["queue_durables"]:
            subs = rs.channels[q["channel"]].subscriptions
            (r,) = [r for r in subs if r.sub.qGroup == f"{q['durable']}:{q['group']}"]
            assert r.sub.clientID == "" and r.sub.isDurable  # the group's shadow
            assert r.sub.lastSent == q["acked_through"] and r.pending == set()
        fs.close_sync()
    # nothing rewritten by a clean recovery
    for p in (FIXTURE / "datastore").rglob("*"):
        if p.is_file():
            assert (root / p.relative_to(FIXTURE / "datastore")).read_bytes() == p.read_bytes()


async def test_go_fixture_continues_and_stays_go_readable(tmp_path: Path) -> None:
    manifest = json.loads((FIXTURE / "manifest.json").read_text())
    root = copy_fixture(tmp_path)
    fs, rs = reopen(root, fixture_limits(), slice_max_msgs=100)
    for name, exp in manifest["channels"].items():
        cs = rs.channels[name].channel
        seq = exp["last"] + 1
        put(cs.msgs, seq, name, data=b"from nss")
        await cs.msgs.flush()
    (r,) = [r for r in rs.channels["orders"].subscriptions if r.sub.durableName == "billing"]
    rs.channels["orders"].channel.subs.ack_seq_pending(r.sub.ID, 41)
    await rs.channels["orders"].channel.subs.flush()
    await fs.close()
    g = GoLayout(root)
    assert g.server_info().ClusterID == "fixture"
    for name, exp in manifest["channels"].items():
        msgs = g.messages(name)
        assert msgs[exp["last"] + 1].data == b"from nss"
        assert max(msgs) == exp["last"] + 1
    # events.a: slices of 100, 100, 100 and 50; the 351st joins slice 4
    assert g.slices("events.a") == [1, 2, 3, 4]
    assert len(g.index(root / "events.a" / "msgs.4.idx")) == 51
    st, pend = g.subs("orders")[r.sub.ID]
    assert pend == set(range(42, 51))
    fs2, rs2 = reopen(root, fixture_limits())
    assert rs2.channels["limits.chan"].channel.msgs.first_sequence() == 72
    fs2.close_sync()


# ---------------------------------------------------------------------------
# Damage


def _one_slice_store(root: Path, n: int = 5, **opts) -> None:
    fs = fresh(root, **opts)
    cs = fs.create_channel("c")
    for s in range(1, n + 1):
        put(cs.msgs, s, "c", data=b"d" * 10)
    fs.close_sync()


def test_zero_filled_tails_are_truncated(tmp_path: Path) -> None:
    root = tmp_path / "s"
    _one_slice_store(root)
    fs = FileStore(str(root), StoreLimits(), FAST)
    assert fs.recover() is not None
    cs = fs.channels["c"]
    sub = spb.SubState(clientID="x")
    cs.subs.create_sub(sub)
    fs.add_client(spb.ClientInfo(ID="x"))
    fs.close_sync()
    sizes = {}
    for rel in ("c/msgs.1.dat", "c/msgs.1.idx", "c/subs.dat", "clients.dat"):
        p = root / rel
        sizes[rel] = p.stat().st_size
        with open(p, "ab") as f:
            f.write(bytes(64))
    fs, rs = reopen(root)
    assert rs.channels["c"].channel.msgs.last_sequence() == 5
    assert [r.sub.ID for r in rs.channels["c"].subscriptions] == [sub.ID]
    assert [c.ID for c in rs.clients] == ["x"]
    fs.close_sync()
    for rel, size in sizes.items():
        assert (root / rel).stat().st_size == size, rel


def test_zero_filled_data_tail_without_index(tmp_path: Path) -> None:
    root = tmp_path / "s"
    _one_slice_store(root)
    dat = root / "c" / "msgs.1.dat"
    size = dat.stat().st_size
    (root / "c" / "msgs.1.idx").unlink()
    with open(dat, "ab") as f:
        f.write(bytes(100))
    fs, rs = reopen(root)
    assert rs.channels["c"].channel.msgs.state()[0] == 5
    fs.close_sync()
    assert dat.stat().st_size == size
    assert len(GoLayout(root).index(root / "c" / "msgs.1.idx")) == 5  # rebuilt


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_bad_data_record(tmp_path: Path, damage: str) -> None:
    root = tmp_path / "s"
    _one_slice_store(root)
    dat = root / "c" / "msgs.1.dat"
    data = bytearray(dat.read_bytes())
    rec_len = (len(data) - 4) // 5
    last_off = 4 + 4 * rec_len
    if damage == "truncated":
        data = data[:-3]
    else:
        data[last_off + 10] ^= 0xFF  # inside the payload: CRC mismatch
    dat.write_bytes(bytes(data))
    # the index points at a record that no longer verifies: rebuilt from
    # the data file, which then meets the damage
    fs = FileStore(str(root), StoreLimits(), FAST)
    with pytest.raises(StoreError) as ei:
        fs.recover()
    text = str(ei.value)
    assert "unable to recover message store for [c]" in text
    assert str(dat) in text and f"offset {last_off}" in text
    assert ("unexpected EOF" if damage == "truncated" else "corrupted data") in text
    assert not (root / "c" / "msgs.1.idx").exists()  # removed, rebuilt next time
    # with truncate_bad_eof the file is cut at the bad record
    fs, rs = reopen(root, truncate_bad_eof=True)
    ms = rs.channels["c"].channel.msgs
    assert (ms.first_sequence(), ms.last_sequence(), ms.state()[0]) == (1, 4, 4)
    fs.close_sync()
    assert dat.stat().st_size == last_off
    assert (root / ".truncate.lck").exists()
    with pytest.raises(StoreError, match="should not be opened consecutively"):
        FileStore(str(root), StoreLimits(), replace(FAST, truncate_bad_eof=True))
    FileStore(str(root), StoreLimits(), FAST).close_sync()
    assert not (root / ".truncate.lck").exists()


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_bad_subs_and_clients_records(tmp_path: Path, damage: str) -> None:
    root = tmp_path / "s"
    fs = fresh(root)
    cs = fs.create_channel("c")
    for _ in range(3):
        cs.subs.create_sub(spb.SubState(clientID="x"))
    for i in range(3):
        fs.add_client(spb.ClientInfo(ID=f"c{i}"))
    fs.close_sync()
    for rel, what in (("c/subs.dat", "subscription store for [c]"), ("clients.dat", "client file")):
        p = root / rel
        good = p.read_bytes()
        data = bytearray(good)
        if damage == "truncated":
            data = data[:-2]
        else:
            data[-1] ^= 0xFF
        p.write_bytes(bytes(data))
        with pytest.raises(StoreError, match="offset") as ei:
            FileStore(str(root), StoreLimits(), FAST).recover()
        assert what in str(ei.value)
        fs, rs = reopen(root, truncate_bad_eof=True)
        if rel == "clients.dat":
            assert sorted(c.ID for c in rs.clients) == ["c0", "c1"]
        else:
            assert len(rs.channels["c"].subscriptions) == 2
        fs.close_sync()
        FileStore(str(root), StoreLimits(), FAST).close_sync()  # clears the witness
        p.write_bytes(good)


def test_index_damage_is_rebuilt_from_data(tmp_path: Path) -> None:
    root = tmp_path / "s"
    _one_slice_store(root)
    idx = root / "c" / "msgs.1.idx"
    good = idx.read_bytes()
    flipped = good[:40] + bytes([good[40] ^ 1]) + good[41:]
    for damaged in (good[:-5], flipped, b"\x01\x00\x00\x00", b"", b"\x07\x00\x00\x00"):
        idx.write_bytes(damaged)
        fs, rs = reopen(root)
        ms = rs.channels["c"].channel.msgs
        assert (ms.first_sequence(), ms.last_sequence()) == (1, 5)
        assert pb.MsgProto.FromString(ms.lookup(3)).sequence == 3
        fs.close_sync()
        assert idx.read_bytes() == good


def test_unindexed_data_tail_is_indexed(tmp_path: Path) -> None:
    """A crash between the data and the index writes: complete records
    after the last indexed one are indexed, a partial one is cut."""
    root = tmp_path / "s"
    _one_slice_store(root)
    idx = root / "c" / "msgs.1.idx"
    dat = root / "c" / "msgs.1.dat"
    full_idx = idx.read_bytes()
    full_dat = dat.read_bytes()
    idx.write_bytes(full_idx[: 4 + 3 * 32])
    dat.write_bytes(full_dat + full_dat[4:10])  # plus a torn record
    fs, rs = reopen(root)
    assert rs.channels["c"].channel.msgs.state()[0] == 5
    fs.close_sync()
    assert idx.read_bytes() == full_idx and dat.read_bytes() == full_dat


# ---------------------------------------------------------------------------
# Slices, limits, expiration


async def test_slices_roll_and_are_removed(tmp_path: Path) -> None:
    root = tmp_path / "s"
    limits = StoreLimits(max_msgs=25)
    fs = fresh(root, limits, slice_max_msgs=10)
    ms = fs.create_channel("c").msgs
    for s in range(1, 36):
        put(ms, s, "c")
    await ms.flush()
    assert (ms.first_sequence(), ms.last_sequence(), ms.state()[0]) == (11, 35, 25)
    g = GoLayout(root)
    assert g.slices("c") == [2, 3, 4]  # slice 1 (1..10) fully removed and deleted
    assert sorted(g.messages("c")) == list(range(11, 36))
    await fs.close()
    # restart with a lower limit: re-applied on recovery
    fs, rs = reopen(root, StoreLimits(max_msgs=12), slice_max_msgs=10)
    ms = rs.channels["c"].channel.msgs
    assert (ms.first_sequence(), ms.state()[0]) == (24, 12)
    assert GoLayout(root).slices("c") == [3, 4]
    assert ms.lookup(23) is None and pb.MsgProto.FromString(ms.lookup(24)).sequence == 24
    fs.close_sync()


async def test_slice_limits_from_options_and_channel(tmp_path: Path) -> None:
    root = tmp_path / "s"
    fs = fresh(root, slice_max_msgs=0, slice_max_bytes=300, slice_max_age=0)
    ms = fs.create_channel("bytes").msgs
    for s in range(1, 11):
        put(ms, s, "bytes", data=b"z" * 60)  # ~110 bytes counted each
    await ms.flush()
    assert GoLayout(root).slices("bytes") == [1, 2, 3, 4]
    fs.close_sync()
    # no slice option at all: a quarter of the channel limits
    root2 = tmp_path / "s2"
    fs = fresh(root2, StoreLimits(max_msgs=8), slice_max_msgs=0, slice_max_bytes=0)
    ms = fs.create_channel("q").msgs
    for s in range(1, 9):
        put(ms, s, "q")
    await ms.flush()
    assert GoLayout(root2).slices("q") == [1, 2, 3, 4]
    fs.close_sync()
    root3 = tmp_path / "s3"
    fs = fresh(root3, slice_max_bytes=0, slice_max_age=10.0)
    ms = fs.create_channel("age").msgs
    for s in range(1, 6):
        put(ms, s, "age", ts=s * 4_000_000_000)  # 4 s apart
    await ms.flush()
    assert GoLayout(root3).slices("age") == [1, 2]
    fs.close_sync()


async def test_expire_all_keeps_sequence_across_restarts(tmp_path: Path) -> None:
    root = tmp_path / "s"
    limits = StoreLimits(max_age=10.0)
    fs = fresh(root, limits, slice_max_msgs=3)
    ms = fs.create_channel("c").msgs
    now = time.time_ns()
    for s in range(1, 8):
        put(ms, s, "c", ts=now - 100 * 10**9 + s)
    await ms.flush()
    assert ms.expire(now) is None
    assert (ms.first_sequence(), ms.last_sequence(), ms.state()) == (8, 7, (0, 0))
    assert GoLayout(root).slices("c") == [3]  # the last slice is never removed
    await fs.close()
    fs, rs = reopen(root, limits, slice_max_msgs=3)
    ms = rs.channels["c"].channel.msgs
    assert (ms.first_sequence(), ms.last_sequence(), ms.state()[0]) == (8, 7, 0)
    assert ms.get_sequence_from_timestamp(0) == 8
    put(ms, 8, "c", ts=time.time_ns())
    await ms.flush()
    assert (ms.first_sequence(), ms.last_sequence()) == (8, 8)
    d = ms.expire(time.time_ns())
    assert d is not None and 9.0 < d <= 10.0
    await fs.close()
    assert GoLayout(root).slices("c") == [3]  # 7 (expired) and 8 share slice 3
    assert sorted(GoLayout(root).messages("c")) == [7, 8]


async def test_archive_script_gets_go_arguments(tmp_path: Path) -> None:
    out = tmp_path / "args.txt"
    script = tmp_path / "archive.sh"
    script.write_text(f'#!/bin/sh\necho "$1|$2|$3" >> {out}\nls "$2" "$3" >> {out}\necho done\n')
    script.chmod(0o755)
    root = tmp_path / "s"
    fs = fresh(root, StoreLimits(max_msgs=3), slice_max_msgs=2, slice_archive_script=str(script))
    ms = fs.create_channel("c").msgs
    for s in range(1, 6):
        put(ms, s, "c")
    await ms.flush()
    fs.wait_archive_scripts(10)
    lines = out.read_text().splitlines()
    dat = os.path.join(str(root), "c", "msgs.1.dat.bak")
    idx = os.path.join(str(root), "c", "msgs.1.idx.bak")
    assert lines[0] == f"c|{dat}|{idx}"
    assert lines[1:3] == [dat, idx]  # renamed, handed over to the script
    assert not (root / "c" / "msgs.1.dat").exists()
    await fs.close()


async def test_gaps_are_filled(tmp_path: Path) -> None:
    root = tmp_path / "s"
    fs = fresh(root)
    ms = fs.create_channel("c").msgs
    put(ms, 1, "c")
    put(ms, 5, "c", data=b"five")
    await ms.flush()
    assert ms.state()[0] == 5
    m3 = pb.MsgProto.FromString(ms.lookup(3))
    assert (m3.sequence, m3.subject, m3.data, m3.timestamp) == (3, "c", b"", 5_000_000_000)
    await fs.close()
    assert sorted(GoLayout(root).messages("c")) == [1, 2, 3, 4, 5]


# ---------------------------------------------------------------------------
# Compaction


async def test_subs_compaction(tmp_path: Path) -> None:
    root = tmp_path / "s"
    fs = fresh(root, compact_min_size=0, compact_frag=50, compact_interval=3600)
    cs = fs.create_channel("c")
    keep = spb.SubState(clientID="k")
    cs.subs.create_sub(keep)
    cs.subs.add_seq_pending(keep.ID, 1)
    cs.subs.add_seq_pending(keep.ID, 2)
    cs.subs.ack_seq_pending(keep.ID, 1)  # 1 del / 3 recs: 33 % < 50 %
    await cs.subs.flush()
    path = root / "c" / "subs.dat"
    before = len(GoLayout(root).records(path, typed=True))
    assert before == 4
    gone = spb.SubState(clientID="g")
    cs.subs.create_sub(gone)
    cs.subs.delete_sub(gone.ID)  # 2 del / 4 recs: compacts
    recs = GoLayout(root).records(path, typed=True)
    assert [t for _, t, _ in recs] == [1, 5]
    assert GoLayout(root).subs("c")[keep.ID][1] == {2}
    # the interval holds the next compaction back
    g2 = spb.SubState(clientID="g2")
    cs.subs.create_sub(g2)
    cs.subs.delete_sub(g2.ID)
    await cs.subs.flush()
    assert len(GoLayout(root).records(path, typed=True)) == 4
    assert not [p for p in os.listdir(root) if p.startswith("subs")]  # temp file renamed
    await fs.close()
    fs, rs = reopen(root)
    (r,) = rs.channels["c"].subscriptions
    assert r.sub.ID == keep.ID and r.pending == {2} and r.sub.lastSent == 2
    fs.close_sync()


async def test_clients_compaction(tmp_path: Path) -> None:
    root = tmp_path / "s"
    fs = fresh(root, compact_min_size=0, compact_frag=50, compact_interval=1)
    fs.add_client(spb.ClientInfo(ID="a"))
    fs.add_client(spb.ClientInfo(ID="b"))
    fs.delete_client("b")  # 1 del / (1 + 1 live) = 50 %: compacts
    await fs.flush()
    recs = GoLayout(root).records(root / "clients.dat", typed=True)
    assert [t for _, t, _ in recs] == [1]
    assert list(GoLayout(root).clients()) == ["a"]
    fs.add_client(spb.ClientInfo(ID="c"))
    await fs.close()
    fs, rs = reopen(root)
    assert sorted(c.ID for c in rs.clients) == ["a", "c"]
    fs.close_sync()


async def test_compaction_respects_min_size_and_switch(tmp_path: Path) -> None:
    root = tmp_path / "s"
    fs = fresh(root, compact_min_size=10**6)
    fs.add_client(spb.ClientInfo(ID="a"))
    fs.delete_client("a")
    cs = fs.create_channel("c")
    s = spb.SubState(clientID="x")
    cs.subs.create_sub(s)
    cs.subs.delete_sub(s.ID)
    await fs.close()
    g = GoLayout(root)
    assert len(g.records(root / "clients.dat", typed=True)) == 2
    assert len(g.records(root / "c" / "subs.dat", typed=True)) == 2
    root2 = tmp_path / "s2"
    fs = fresh(root2, compact_enabled=False, compact_min_size=0)
    fs.add_client(spb.ClientInfo(ID="a"))
    fs.delete_client("a")
    await fs.close()
    assert len(GoLayout(root2).records(root2 / "clients.dat", typed=True)) == 2


# ---------------------------------------------------------------------------
# Options


@pytest.mark.parametrize(
    ("opts", "text"),
    [
        ({"buffer_size": -1}, "buffer size value must be a positive number"),
        ({"compact_interval": 0}, "compact interval value must at least be 1 seconds"),
        ({"compact_frag": 0}, "compact fragmentation value must at least be 1"),
        ({"compact_min_size": -1}, "compact minimum file size value must be a positive number"),
        ({"crc_poly": 0}, "crc polynomial should be between 1 and 4294967295"),
        ({"crc_poly": 2**32}, "crc polynomial should be between 1 and 4294967295"),
        ({"slice_max_msgs": -1}, "slice max values must be positive numbers"),
        ({"slice_max_bytes": -1}, "slice max values must be positive numbers"),
        ({"slice_max_age": -1.0}, "slice max values must be positive numbers"),
        ({"fds_limit": -1}, "file descriptor limit must be a positive number"),
        ({"parallel_recovery": 0}, "parallel recovery value must be at least 1"),
        ({"read_buffer_size": -1}, "read buffer size value must be a positive number"),
    ],
)
def test_option_validation(tmp_path: Path, opts: dict, text: str) -> None:
    with pytest.raises(StoreError) as ei:
        FileStore(str(tmp_path), StoreLimits(), replace(FileOptions(), **opts))
    assert str(ei.value) == text


async def test_custom_crc_polynomial(tmp_path: Path) -> None:
    castagnoli = 0x82F63B78
    crc = make_crc(castagnoli)
    assert crc(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert make_crc(0xEDB88320)(b"abc") == zlib.crc32(b"abc")
    root = tmp_path / "s"
    fs = fresh(root, crc_poly=castagnoli)
    cs = fs.create_channel("c")
    for s in range(1, 4):
        put(cs.msgs, s, "c")
    cs.subs.create_sub(spb.SubState(clientID="x"))
    await fs.close()
    g = GoLayout(root, crc=crc)
    assert sorted(g.messages("c")) == [1, 2, 3] and len(g.subs("c")) == 1
    with pytest.raises(AssertionError, match="bad"):
        GoLayout(root).messages("c")
    fs, rs = reopen(root, crc_poly=castagnoli)
    assert rs.channels["c"].channel.msgs.state()[0] == 3
    fs.close_sync()


async def test_do_crc_off_serves_without_checking(tmp_path: Path) -> None:
    root = tmp_path / "s"
    _one_slice_store(root)
    dat = root / "c" / "msgs.1.dat"
    data = bytearray(dat.read_bytes())
    rec_len = (len(data) - 4) // 5
    data[4 + rec_len + 8 + 1] ^= 0x01  # message 2, inside the subject
    dat.write_bytes(bytes(data))
    fs, rs = reopen(root, do_crc=False)
    assert rs.channels["c"].channel.msgs.lookup(2) is not None
    fs.close_sync()
    fs, rs = reopen(root, do_crc=True, read_buffer_size=0)
    ms = rs.channels["c"].channel.msgs
    assert ms.lookup(2) is None and ms.lookup(3) is not None  # logged, not served
    fs.close_sync()


async def test_buffering_and_sync_options(tmp_path: Path) -> None:
    root = tmp_path / "s"
    fs = fresh(root, buffer_size=0, read_buffer_size=0, do_sync=True)
    ms = fs.create_channel("c").msgs
    put(ms, 1, "c")
    dat = root / "c" / "msgs.1.dat"
    assert dat.stat().st_size > 4  # unbuffered: written by store()
    await ms.flush()
    assert not ms._msglog.sync.dirty()
    await fs.close()
    root2 = tmp_path / "s2"
    fs = fresh(root2, buffer_size=1 << 20)
    ms = fs.create_channel("c").msgs
    put(ms, 1, "c")
    assert (root2 / "c" / "msgs.1.dat").stat().st_size == 4  # buffered
    assert pb.MsgProto.FromString(ms.lookup(1)).sequence == 1  # served from memory
    assert ms.timestamp_of(1) == 1_000_000_000
    await ms.flush()
    assert (root2 / "c" / "msgs.1.dat").stat().st_size > 4
    await fs.close()


async def test_auto_sync_runs_in_background(tmp_path: Path) -> None:
    root = tmp_path / "s"
    fs = fresh(root, do_sync=False, auto_sync=0.05)
    cs = fs.create_channel("c")
    put(cs.msgs, 1, "c")
    cs.subs.create_sub(spb.SubState(clientID="x"))
    await cs.msgs.flush()
    await cs.subs.flush()
    assert cs.msgs._msglog.sync.dirty() and cs.subs._sync.dirty()
    for _ in range(100):
        await asyncio.sleep(0.02)
        if not cs.msgs._msglog.sync.dirty() and not cs.subs._sync.dirty():
            break
    assert not cs.msgs._msglog.sync.dirty() and not cs.subs._sync.dirty()
    await fs.close()


async def test_fds_limit_is_best_effort_and_reads_still_work(tmp_path: Path) -> None:
    root = tmp_path / "s"
    fs = fresh(root, fds_limit=6, slice_max_msgs=2, read_buffer_size=0)
    chans = [fs.create_channel(f"c{i}") for i in range(6)]
    for cs in chans:
        for s in range(1, 8):
            put(cs.msgs, s, cs.name)
        await cs.msgs.flush()
        cs.subs.create_sub(spb.SubState(clientID="x"))
        await cs.subs.flush()
        assert fs.pool.count <= 6
    for cs in chans:
        cs.msgs._cache_drop(0)
        for s in range(1, 8):
            assert pb.MsgProto.FromString(cs.msgs.lookup(s)).sequence == s
            assert fs.pool.count <= 6
    await fs.close()
    for cs in chans:
        assert sorted(GoLayout(root).messages(cs.name)) == list(range(1, 8))


async def test_read_ahead_cache_is_bounded(tmp_path: Path) -> None:
    root = tmp_path / "s"
    fs = fresh(root, read_buffer_size=4096, buffer_size=2048)
    ms = fs.create_channel("c").msgs
    for s in range(1, 3001):
        put(ms, s, "c", data=b"m" * 500)
        if s % 100 == 0:
            await ms.flush()
    assert ms._cache_bytes <= ms._cache_max + 2048
    ms._cache_drop(0)
    for s in range(1, 3001):
        assert pb.MsgProto.FromString(ms.lookup(s)).sequence == s
        assert ms._cache_bytes <= ms._cache_max
    assert ms.get_sequence_from_timestamp(1500 * 1_000_000_000) == 1500
    await fs.close()


def test_exclusive_lock_is_a_posix_record_lock(tmp_path: Path) -> None:
    root = tmp_path / "s"
    fs = FileStore(str(root), StoreLimits(), FAST)
    assert fs.lock().acquire() is True
    assert fs.lock().acquire() is True
    probe = textwrap.dedent(
        f"""
        import fcntl, os
        fd = os.open({str(root / ".rootdir.lck")!r}, os.O_RDWR)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            print("acquired")
        except OSError:
            print("busy")
        """
    )
    run = [sys.executable, "-c", probe]
    assert subprocess.run(run, capture_output=True, text=True).stdout.strip() == "busy"
    assert fs.lock().check()
    (root / ".rootdir.lck").unlink()
    assert not fs.lock().check()
    fs.close_sync()
    fs = FileStore(str(root), StoreLimits(), FAST)
    assert fs.lock().acquire() and fs.lock().check()
    fs.close_sync()
    assert subprocess.run(run, capture_output=True, text=True).stdout.strip() == "acquired"


async def test_delete_channel_and_empty(tmp_path: Path) -> None:
    root = tmp_path / "s"
    fs = fresh(root)
    cs = fs.create_channel("c")
    put(cs.msgs, 1, "c")
    put(cs.msgs, 2, "c")
    await cs.msgs.flush()
    cs.msgs.empty()
    assert cs.msgs.state() == (0, 0) and cs.msgs.first_sequence() == 3
    assert not [n for n in os.listdir(root / "c") if n.startswith("msgs.")]
    put(cs.msgs, 3, "c")
    await cs.msgs.flush()
    assert GoLayout(root).slices("c") == [1]
    fs.delete_channel("c")
    assert not (root / "c").exists()
    with pytest.raises(StoreError, match=ERR_NOT_FOUND):
        fs.delete_channel("c")
    await fs.close()
    fs, rs = reopen(root)
    assert rs.channels == {}
    fs.close_sync()


def test_friendly_bytes() -> None:
    assert friendly_bytes(512) == "512 B"
    assert friendly_bytes(2048) == "2.00 KB"
    assert friendly_bytes(1_024_000_000) == "976.56 MB"


# ---------------------------------------------------------------------------
# Failed writes, files never completed, full and read-only disks (issue 9)

pytest_plugins = ["tmpfs"]


def _sizes(d: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(d.iterdir())}


async def test_rollback_cuts_written_records_and_rolled_slices(tmp_path: Path) -> None:
    """Records of a failed batch already written (no buffering) are cut off
    the files; slices the batch started are deleted; slices the limits
    removed come back, and are deleted only when a batch is released."""
    root = tmp_path / "s"
    fs = fresh(root, StoreLimits(max_msgs=4), slice_max_msgs=2, buffer_size=0)
    ms = fs.create_channel("c").msgs
    for s in range(1, 4):
        put(ms, s, "c", data=b"kept")
    await ms.flush()
    chan = root / "c"
    before = _sizes(chan)
    assert GoLayout(root).slices("c") == [1, 2]
    ms.mark()
    for s in range(4, 10):
        put(ms, s, "c", data=b"refused")
    # written at once; slices 1 and 2 are out (limits) but deleted only at release
    assert GoLayout(root).slices("c") == [1, 2, 3, 4, 5]
    assert ms.first_sequence() == 6
    ms.rollback()
    assert _sizes(chan) == before
    assert (ms.first_sequence(), ms.last_sequence(), ms.state()[0]) == (1, 3, 3)
    assert [pb.MsgProto.FromString(ms.lookup(s)).data for s in range(1, 4)] == [b"kept"] * 3
    ms.mark()
    for s in range(4, 7):
        put(ms, s, "c", data=b"new")
    await ms.flush()
    ms.release()
    assert GoLayout(root).slices("c") == [2, 3]  # slice 1 (1, 2) removed at release
    await fs.close()
    msgs = GoLayout(root).messages("c")
    assert {s: m.data for s, m in msgs.items()} == {
        3: b"kept", 4: b"new", 5: b"new", 6: b"new"
    }
    fs, rs = reopen(root, StoreLimits(max_msgs=4), slice_max_msgs=2)
    ms = rs.channels["c"].channel.msgs
    assert (ms.first_sequence(), ms.last_sequence()) == (3, 6)
    fs.close_sync()


async def test_rollback_keeps_what_was_buffered_before_the_mark(tmp_path: Path) -> None:
    root = tmp_path / "s"
    fs = fresh(root)
    ms = fs.create_channel("c").msgs
    put(ms, 1, "c", data=b"one")
    ms.mark()  # 1 is still in the write buffer
    put(ms, 2, "c", data=b"two")
    ms.rollback()
    await ms.flush()
    await fs.close()
    assert {s: m.data for s, m in GoLayout(root).messages("c").items()} == {1: b"one"}


def test_files_never_completed_are_recovered_as_empty(tmp_path: Path, capfd) -> None:
    """Go (and nss before issue 9) refused to start on an empty subs.dat
    ("unable to verify file version: EOF"): the operator had to delete it."""
    root = tmp_path / "s"
    fs = fresh(root)
    cs = fs.create_channel("c")
    for s in range(1, 4):
        put(cs.msgs, s, "c")
    cs.subs.create_sub(spb.SubState(clientID="x"))
    fs.create_channel("other")
    fs.add_client(spb.ClientInfo(ID="x"))
    fs.close_sync()
    short = {
        root / "other" / "subs.dat": b"",
        root / "clients.dat": b"\x01",
        root / "c" / "msgs.2.dat": b"",  # a slice whose creation failed
        root / "c" / "msgs.2.idx": b"\x01\x00\x00",
    }
    (root / "new").mkdir()
    short[root / "new" / "subs.dat"] = b""
    for p, data in short.items():
        p.write_bytes(data)
    capfd.readouterr()
    fs, rs = reopen(root)
    err = capfd.readouterr().err
    for p, data in short.items():
        assert f'File "{p}" is shorter than its version header ({len(data)} bytes)' in err
        assert p.read_bytes() == b"\x01\x00\x00\x00"
    assert rs.clients == []
    assert rs.channels["other"].subscriptions == []
    assert rs.channels["new"].channel.msgs.last_sequence() == 0
    ms = rs.channels["c"].channel.msgs
    assert (ms.first_sequence(), ms.last_sequence()) == (1, 3)
    assert len(rs.channels["c"].subscriptions) == 1
    put(ms, 4, "c")
    rs.channels["other"].channel.subs.create_sub(spb.SubState(clientID="y"))
    fs.close_sync()
    fs, rs = reopen(root)
    assert rs.channels["c"].channel.msgs.last_sequence() == 4
    assert len(rs.channels["other"].subscriptions) == 1
    fs.close_sync()


def test_zero_padding_with_records_behind_it_is_reported(tmp_path: Path, capfd) -> None:
    """Zeros in the middle of subs.dat or clients.dat end the log there as
    before, but the records behind them are no longer dropped silently."""
    root = tmp_path / "s"
    fs = fresh(root)
    cs = fs.create_channel("c")
    sub = spb.SubState(clientID="x")
    cs.subs.create_sub(sub)
    for s in range(1, 6):
        cs.subs.add_seq_pending(sub.ID, s)
    for s in range(1, 6):
        cs.subs.ack_seq_pending(sub.ID, s)
    for i in range(3):
        fs.add_client(spb.ClientInfo(ID=f"c{i}"))
    fs.close_sync()
    g = GoLayout(root)
    holes = {}
    for rel, typed_rec in (("c/subs.dat", 6), ("clients.dat", 1)):
        p = root / rel
        data = bytearray(p.read_bytes())
        off = 4
        for _, _, payload in g.records(p, typed=True)[:typed_rec]:
            off += 8 + len(payload)
        data[off : off + 8] = bytes(8)  # one record header zeroed
        p.write_bytes(bytes(data))
        holes[p] = off
    capfd.readouterr()
    fs, rs = reopen(root)
    err = capfd.readouterr().err
    for p, off in holes.items():
        assert f'File "{p}" has zero padding at offset {off} with data behind it' in err
        assert p.stat().st_size == off
    # the acks behind the zeros are gone: their messages are pending again
    assert rs.channels["c"].subscriptions[0].pending == {1, 2, 3, 4, 5}
    assert [c.ID for c in rs.clients] == ["c0"]
    fs.close_sync()
    # a plain zero tail (pre-allocated space) is not worth a warning
    with open(root / "clients.dat", "ab") as f:
        f.write(bytes(64))
    capfd.readouterr()
    fs, rs = reopen(root)
    assert "zero padding" not in capfd.readouterr().err
    fs.close_sync()


def _fill(disk_root: Path) -> None:
    """Take every free byte of the file system."""
    with open(disk_root / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"f" * 4096)
        except OSError:
            pass


async def test_failed_append_leaves_no_partial_record(tmp_path: Path, tmpfs) -> None:
    """A subs.dat/clients.dat write that fails half way (the record crosses
    into a page the full disk cannot give) is cut back off: a crash then
    leaves a log that recovers without file_truncate_bad_eof."""
    disk = tmpfs(128)
    root = disk.path / "s"
    fs = fresh(root)
    cs = fs.create_channel("c")
    sub = spb.SubState(clientID="x", inbox="i" * 200)
    cs.subs.create_sub(sub)
    fs.add_client(spb.ClientInfo(ID="x", HbInbox="h" * 200))
    await cs.subs.flush()
    await fs.flush()
    # end both files just short of a page boundary
    while (root / "c" / "subs.dat").stat().st_size < 4096 - 300:
        cs.subs.update_sub(sub)
        await cs.subs.flush()
    while (root / "clients.dat").stat().st_size < 4096 - 300:
        fs.add_client(spb.ClientInfo(ID="x", HbInbox="h" * 200))
        await fs.flush()
    sizes = {p: p.stat().st_size for p in (root / "c" / "subs.dat", root / "clients.dat")}
    _fill(disk.path)
    for _ in range(3):  # the third record crosses the page boundary
        cs.subs.update_sub(sub)
        fs.add_client(spb.ClientInfo(ID="x", HbInbox="h" * 200))
    with pytest.raises(StoreError, match="No space left on device"):
        await cs.subs.flush()
    with pytest.raises(StoreError, match="No space left on device"):
        await fs.flush()
    for p, size in sizes.items():
        assert p.stat().st_size == size, p  # nothing half written
    # as after a crash now (fs is not closed): recovery needs no option
    fs2, rs = reopen(root)
    assert len(rs.channels["c"].subscriptions) == 1 and [c.ID for c in rs.clients] == ["x"]
    fs2.close_sync()
    (disk.path / "filler").unlink()
    await fs.close()


async def test_rollback_that_cannot_truncate_refuses_new_messages(tmp_path: Path, tmpfs) -> None:
    """The cut of a failed batch fails too (here the file system refuses
    it: the file is immutable): the channel refuses messages (new ones must
    not land behind records that were refused) until the cut can be made,
    then stores again."""
    disk = tmpfs(1024)
    root = disk.path / "s"
    fs = fresh(root, buffer_size=0)
    ms = fs.create_channel("c").msgs
    for s in range(1, 3):
        put(ms, s, "c", data=b"kept")
    await ms.flush()
    ms.mark()
    put(ms, 3, "c", data=b"refused")  # written at once (no buffer)
    dat = root / "c" / "msgs.1.dat"
    subprocess.run(["chattr", "+i", str(dat)], check=True)
    try:
        ms.rollback()
        assert ms.last_sequence() == 2 and ms.lookup(3) is None
        with pytest.raises(StoreError, match=f'unable to undo a failed write on "{dat}"'):
            put(ms, 3, "c", data=b"retried")
    finally:
        subprocess.run(["chattr", "-i", str(dat)], check=True)
    put(ms, 3, "c", data=b"retried")
    await fs.close()
    fs, rs = reopen(root)
    ms = rs.channels["c"].channel.msgs
    got = [pb.MsgProto.FromString(ms.lookup(s)).data for s in range(1, 4)]
    assert got == [b"kept", b"kept", b"retried"] and ms.last_sequence() == 3
    fs.close_sync()


def test_read_only_datastore_is_reported_as_such(tmp_path: Path, tmpfs) -> None:
    disk = tmpfs(1024)
    root = disk.path / "s"
    fresh(root).close_sync()
    disk.read_only()
    fs = FileStore(str(root), StoreLimits(), FAST)
    with pytest.raises(StoreError, match="read-only file system"):
        fs.lock().acquire()
    fs.close_sync()
