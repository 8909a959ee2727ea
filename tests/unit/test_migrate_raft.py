"""The Go clustered import's pure parts: the BoltDB reader, raft entry
decoding, and the replay of Raft operations onto a store (a MEMORY store
here; the real stores are exercised by tests/integration/test_migrate.py)."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import msgpack
import pytest

from nss.migrate.raft.boltdb import BoltDB, BoltError, fnv1a64
from nss.migrate.raft.log import LOG_COMMAND, RaftLog, RaftLogError, decode_entry, decode_time
from nss.migrate.raft.replay import Replayer
from nss.migrate.target import unlimited
from nss.pb import protocol_pb2 as pb
from nss.pb import spb_pb2 as spb
from nss.stores.memory import MemoryStore

RAFT = Path(__file__).resolve().parents[1] / "fixtures" / "go-v0.25.6" / "clustered" / "raft"
LOG = RAFT / "fixture" / "raft.log"
Op = spb.RaftOperation


# ---------------------------------------------------------------- BoltDB


def test_fnv1a64_known_values() -> None:
    assert fnv1a64(b"") == 0xCBF29CE484222325
    assert fnv1a64(b"a") == 0xAF63DC4C8601EC8C


def test_bolt_reads_the_go_raft_log() -> None:
    db = BoltDB(str(LOG))
    assert db.page_size == 4096
    assert db.buckets() == [b"channels", b"conf", b"logs"]
    conf = dict(db.items(b"conf"))
    assert struct.unpack(">Q", conf[b"CurrentTerm"])[0] == 2
    keys = [struct.unpack(">Q", k)[0] for k, _ in db.items(b"logs")]
    # 613 entries spread over several leaf pages, in key order
    assert keys == list(range(1, 614))
    assert list(db.items(b"nope")) == []


def test_bolt_falls_back_to_the_other_meta_page(tmp_path: Path) -> None:
    good = BoltDB(str(LOG))
    broken = tmp_path / "raft.log"
    shutil.copy(LOG, broken)
    data = bytearray(broken.read_bytes())
    newest = 0 if good.txid == struct.unpack_from("<Q", data, 16 + 48)[0] else 1
    data[newest * 4096 + 16 + 40] ^= 0xFF  # corrupt the newest meta: checksum fails
    broken.write_bytes(bytes(data))
    older = BoltDB(str(broken))
    assert older.txid == good.txid - 1
    assert len(list(older.items(b"logs"))) >= 600


def test_bolt_refuses_what_is_not_bolt(tmp_path: Path) -> None:
    p = tmp_path / "x"
    p.write_bytes(b"\0" * 8192)
    with pytest.raises(BoltError, match="not a BoltDB file"):
        BoltDB(str(p))


# ---------------------------------------------------------------- raft entries


def test_decode_time_layouts() -> None:
    sec, ns = 1_795_685_448, 701_220_494
    assert decode_time(struct.pack(">I", sec)) == sec * 10**9
    assert decode_time(struct.pack(">Q", ns << 34 | sec)) == sec * 10**9 + ns
    assert decode_time(struct.pack(">Iq", ns, sec)) == sec * 10**9 + ns
    assert decode_time(None) == 0


def test_decode_entry_of_a_msgpack_log() -> None:
    op = Op(OpType=Op.DeleteChannel, Channel="c", ChannelID=3)
    raw = msgpack.packb(
        {
            "Index": 7,
            "Term": 2,
            "Type": LOG_COMMAND,
            "Data": op.SerializeToString(),
            "Extensions": None,
            "AppendedAt": struct.pack(">I", 100),
        },
        use_bin_type=False,
    )
    e = decode_entry(raw)
    assert (e.index, e.term, e.type, e.appended_at_ns) == (7, 2, 0, 100 * 10**9)
    assert e.operation() == op
    with pytest.raises(RaftLogError):
        decode_entry(b"\xc1")


def test_raft_log_of_the_fixture() -> None:
    r = RaftLog(str(RAFT))  # the cluster_log_path: its one cluster directory is found
    assert r.dir.endswith("fixture")
    assert r.channel_ids() == {"events.a": 124, "events.b": 474, "limits.chan": 481, "orders": 4}
    assert r.latest_snapshot() is None
    kinds: dict[int, int] = {}
    for e in r.entries():
        if e.type == LOG_COMMAND:
            t = e.operation().OpType
            kinds[t] = kinds.get(t, 0) + 1
    assert kinds == {
        Op.Publish: 597,
        Op.Connect: 2,
        Op.Subscribe: 3,
        Op.SendAndAck: 5,
        Op.CloseSubscription: 2,
        Op.Disconnect: 1,
    }


def test_raft_log_snapshot_is_read(tmp_path: Path) -> None:
    d = tmp_path / "c"
    (d / "snapshots" / "2-50-1").mkdir(parents=True)
    (d / "snapshots" / "2-90-2.tmp").mkdir(parents=True)  # unfinished: ignored
    shutil.copy(LOG, d / "raft.log")
    snap = spb.RaftSnapshot(Clients=[spb.ClientInfo(ID="a", HbInbox="hb")])
    body = snap.SerializeToString()
    (d / "snapshots" / "2-50-1" / "state.bin").write_bytes(struct.pack("<I", len(body)) + body)
    (d / "snapshots" / "2-50-1" / "meta.json").write_text('{"Index": 50, "Term": 2}')
    got = RaftLog(str(d)).latest_snapshot()
    assert got is not None and got.index == 50 and got.state == snap


# ---------------------------------------------------------------- replay


def _msg(ch: str, seq: int) -> pb.MsgProto:
    return pb.MsgProto(sequence=seq, subject=ch, data=b"m%d" % seq, timestamp=seq * 10**9)


def _publish(ch: str, first: int, last: int, cid: int = 1) -> spb.RaftOperation:
    return Op(
        OpType=Op.Publish,
        ChannelID=cid,
        PublishBatch=spb.Batch(Messages=[_msg(ch, s) for s in range(first, last + 1)]),
    )


def _connect(cid: str) -> spb.RaftOperation:
    return Op(
        OpType=Op.Connect,
        ClientConnect=spb.AddClient(
            Request=pb.ConnectRequest(clientID=cid, heartbeatInbox=f"hb.{cid}")
        ),
    )


def _subscribe(cid: str, ch: str, ack: str, **kw: object) -> spb.RaftOperation:
    req = pb.SubscriptionRequest(
        clientID=cid, subject=ch, inbox=f"in.{ack}", maxInFlight=100, ackWaitInSecs=30, **kw
    )
    return Op(OpType=Op.Subscribe, ChannelID=1, Sub=spb.AddSubscription(Request=req, AckInbox=ack))


def _sent_ack(ch: str, ack: str, sent: list[int], acked: list[int]) -> spb.RaftOperation:
    return Op(
        OpType=Op.SendAndAck,
        SubSentAck=spb.SubSentAndAck(Channel=ch, AckInbox=ack, Sent=sent, Ack=acked),
    )


def _close(cid: str, ch: str, ack: str, unsubscribe: bool = False) -> spb.RaftOperation:
    return Op(
        OpType=Op.RemoveSubscription if unsubscribe else Op.CloseSubscription,
        Unsub=pb.UnsubscribeRequest(clientID=cid, subject=ch, inbox=ack),
    )


def _replayer(*channels: str) -> Replayer:
    st = MemoryStore(unlimited())
    st.init(spb.ServerInfo(ClusterID="t"))
    for name in channels:
        st.create_channel(name)
    r = Replayer(st, {}, lambda _: None)
    r.ids = dict.fromkeys(channels, 1)
    return r


def _records(r: Replayer, ch: str) -> list[spb.SubState]:
    return [s.to_state() for s in r.channels.get(ch).all_subs()]  # type: ignore[union-attr]


def test_durable_keeps_position_and_pending_after_close() -> None:
    r = _replayer("orders")
    for op in [
        _connect("w"),
        _publish("orders", 1, 10),
        _subscribe("w", "orders", "ack1", durableName="billing", startPosition=pb.First),
        _sent_ack("orders", "ack1", list(range(1, 8)), [1, 2, 3, 4, 5]),
        _close("w", "orders", "ack1"),
    ]:
        r.apply(op)
    (sub,) = r.channels.get("orders").all_subs()  # type: ignore[union-attr]
    assert sub.is_durable and sub.is_closed and sub.client is None
    assert sub.last_sent == 7 and sorted(sub.pending) == [6, 7]
    assert r.client_ids() == ["w"]


def test_disconnect_drops_plain_subs_and_keeps_durables() -> None:
    r = _replayer("a")
    r.apply(_connect("w"))
    r.apply(_subscribe("w", "a", "p1"))
    r.apply(_subscribe("w", "a", "d1", durableName="d"))
    r.apply(Op(OpType=Op.Disconnect, ClientDisconnect=pb.CloseRequest(clientID="w")))
    recs = _records(r, "a")
    assert [(s.durableName, s.isClosed) for s in recs] == [("d", True)]
    assert r.client_ids() == []


def test_durable_queue_group_leaves_a_shadow_with_the_group_position() -> None:
    r = _replayer("ev")
    r.apply(_connect("q"))
    r.apply(_publish("ev", 1, 5))
    r.apply(_subscribe("q", "ev", "m1", qGroup="workers", durableName="dq"))
    r.apply(_sent_ack("ev", "m1", [1, 2, 3, 4, 5], [1, 2, 3, 4, 5]))
    r.apply(_close("q", "ev", "m1"))
    (shadow,) = _records(r, "ev")
    assert shadow.qGroup == "dq:workers" and shadow.clientID == "" and shadow.lastSent == 5


def test_start_position_is_that_of_the_time_of_the_subscription() -> None:
    """The store holds the final messages; a new-only subscription made
    when the channel had 3 messages starts after 3, not after the last."""
    r = _replayer("a")
    for seq in range(1, 11):
        r.store.channels["a"].msgs.store(seq, seq, _msg("a", seq).SerializeToString())
    r.apply(_connect("w"))
    r.apply(_publish("a", 1, 3))
    r.apply(_subscribe("w", "a", "n1", startPosition=pb.NewOnly))
    r.apply(_publish("a", 4, 10))
    (sub,) = _records(r, "a")
    assert sub.lastSent == 3


def test_operations_of_a_deleted_incarnation_are_skipped() -> None:
    r = _replayer("a")
    r.apply(_connect("w"))
    r.apply(_publish("a", 1, 2, cid=7))  # channel "a" is ID 1 now
    r.apply(Op(OpType=Op.DeleteChannel, Channel="a", ChannelID=7))
    assert r.report.skipped == 2 and "a" in r.store.channels
    assert r.store.channels["a"].msgs.last_sequence() == 0


def test_committed_messages_missing_from_the_store_are_added() -> None:
    r = _replayer("a")
    r.apply(_publish("a", 1, 3))
    assert r.report.messages_added == 3
    assert r.store.channels["a"].msgs.lookup(3) == _msg("a", 3).SerializeToString()
    assert r.digests["a"].count == 3


def test_snapshot_subscriptions_and_clients_are_restored() -> None:
    r = _replayer("a")
    snap = spb.RaftSnapshot(
        Clients=[spb.ClientInfo(ID="w", HbInbox="hb")],
        Channels=[
            spb.ChannelSnapshot(
                Channel="a",
                First=1,
                Last=9,
                ChannelID=1,
                Subscriptions=[
                    spb.SubscriptionSnapshot(
                        State=spb.SubState(
                            ID=4,
                            clientID="w",
                            ackInbox="k",
                            inbox="i",
                            durableName="d",
                            isDurable=True,
                            lastSent=9,
                            maxInFlight=10,
                        ),  # fmt: skip
                        AcksPending=[8, 9],
                    )
                ],
            )
        ],
    )
    r._restore(snap)
    r.apply(_sent_ack("a", "k", [], [8]))  # later log entries find it by ack inbox
    (sub,) = r.channels.get("a").all_subs()  # type: ignore[union-attr]
    assert sub.client is not None and sub.last_sent == 9 and sorted(sub.pending) == [9]
    assert r.last["a"] == 9
