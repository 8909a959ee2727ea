"""The publish batch alone: plain values in, stored messages, deliveries and
PubAcks out, in that order. MEMORY store, no NATS."""

from __future__ import annotations

import asyncio

import pytest

from nss.log import get_logger
from nss.options import StoreLimits
from nss.pb import protocol_pb2 as pb
from nss.server.batch import ERR_MAX_PAYLOAD, PublishBatch, encode_puback
from nss.server.core.channels import ChannelRegistry
from nss.server.core.model import Channel, Client
from nss.server.core.subscriptions import attach, create_or_resume
from nss.server.delivery import Deliverer
from nss.stores.base import StoreError
from nss.stores.memory import MemoryStore


class Harness:
    def __init__(self, max_payload: int = 1024, **limits: int) -> None:
        self.store = MemoryStore(StoreLimits(**limits))
        self.channels = ChannelRegistry(self.store)
        self.sent: list[tuple[str, bytes]] = []
        self.published: list[Channel] = []
        self.deliverer = Deliverer(self.send, lambda sub: None, asyncio.get_running_loop())
        self.batch = PublishBatch(
            lambda name: self.channels.lookup_or_create(name)[0],
            self.deliverer,
            self.send,
            self.published.append,
            max_payload,
            get_logger(),
        )

    def send(self, subject: str, payload: bytes) -> None:
        self.sent.append((subject, payload))

    def subscribe(self, name: str, inbox: str, max_inflight: int = 100):
        ch, _ = self.channels.lookup_or_create(name)
        client = Client("c", "hb")
        req = pb.SubscriptionRequest(
            clientID="c", subject=name, inbox=inbox, maxInFlight=max_inflight, ackWaitInSecs=30
        )
        sub = create_or_resume(ch, client, req, "ack." + inbox).sub
        attach(sub, client)
        sub.initialized = True
        return sub


async def test_sequences_deliveries_then_pubacks() -> None:
    h = Harness()
    h.subscribe("a", "in.a")
    for i in range(3):
        h.batch.add_publish("a", f"g{i}", "", b"x%d" % i, f"r{i}")
    h.batch.add_publish("b", "gb", "", b"y", "rb")
    assert h.sent == []  # nothing leaves before the commit
    await h.batch.commit()
    delivered = [pb.MsgProto.FromString(p) for s, p in h.sent if s == "in.a"]
    assert [(m.sequence, m.data) for m in delivered] == [(1, b"x0"), (2, b"x1"), (3, b"x2")]
    acks = [(s, p) for s, p in h.sent if s.startswith("r")]
    assert acks == [(f"r{i}", encode_puback(f"g{i}")) for i in range(3)] + [
        ("rb", encode_puback("gb"))
    ]
    assert h.sent.index(("r0", encode_puback("g0"))) > 2  # after the deliveries
    assert [ch.name for ch in h.published] == ["a", "b"]
    assert h.batch.batches == 1 and h.batch.batched_msgs == 4


async def test_oversized_message_refused_sequence_not_used() -> None:
    h = Harness(max_payload=64)
    h.batch.add_publish("a", "g1", "", b"x" * 100, "r1")
    h.batch.add_publish("a", "g2", "", b"x", "r2")
    await h.batch.commit()
    assert pb.PubAck.FromString(h.sent[0][1]).error == ERR_MAX_PAYLOAD
    ch = h.channels.get("a")
    assert ch is not None and ch.msgs.last_sequence() == 1 and ch.next_seq == 2


async def test_limit_error_answers_that_publish_only() -> None:
    h = Harness(max_channels=1)
    h.batch.add_publish("a", "g1", "", b"x", "r1")
    h.batch.add_publish("b", "g2", "", b"x", "r2")
    await h.batch.commit()
    errors = {s: pb.PubAck.FromString(p).error for s, p in h.sent}
    assert errors == {"r1": "", "r2": "too many channels"}


async def test_failed_flush_acknowledges_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness()
    h.subscribe("a", "in.a")
    h.batch.add_publish("a", "g1", "", b"x", "r1")
    ch = h.channels.get("a")
    assert ch is not None

    async def fail() -> None:
        raise StoreError("disk on fire")

    monkeypatch.setattr(ch.msgs, "flush", fail)
    await h.batch.commit()
    assert [s for s, _ in h.sent] == ["r1"]  # not delivered
    assert pb.PubAck.FromString(h.sent[0][1]) == pb.PubAck(guid="g1", error="disk on fire")


async def test_ack_unstalls_and_delivers_at_commit() -> None:
    h = Harness()
    sub = h.subscribe("a", "in.a", max_inflight=1)
    h.batch.add_publish("a", "g1", "", b"1", "")
    h.batch.add_publish("a", "g2", "", b"2", "")
    await h.batch.commit()
    assert [s for s, _ in h.sent] == ["in.a"] and sub.stalled
    h.batch.add_ack(sub, 1)
    await h.batch.commit()
    assert [pb.MsgProto.FromString(p).sequence for s, p in h.sent] == [1, 2]


async def test_failed_store_acknowledges_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The messages reach the store at commit: a store refusing them there
    gets the batch's publishers error PubAcks, and their sequences are
    used again by the next batch."""
    h = Harness()
    h.subscribe("a", "in.a")
    h.batch.add_publish("a", "g0", "", b"kept", "r0")
    await h.batch.commit()
    ch = h.channels.get("a")
    assert ch is not None
    h.sent.clear()
    real = ch.msgs.store_many

    def refuse(first: int, tss: list[int], datas: list[bytes]) -> None:
        real(first, tss[:1], datas[:1])  # half stored, then the disk fills
        raise StoreError("no space left on device")

    monkeypatch.setattr(ch.msgs, "store_many", refuse)
    h.batch.add_publish("a", "g1", "", b"x", "r1")
    h.batch.add_publish("a", "g2", "", b"y", "r2")
    await h.batch.commit()
    assert [(s, pb.PubAck.FromString(p).error) for s, p in h.sent] == [
        ("r1", "no space left on device"),
        ("r2", "no space left on device"),
    ]
    assert (ch.msgs.last_sequence(), ch.msgs.state()[0], ch.next_seq) == (1, 1, 2)
    monkeypatch.undo()
    h.sent.clear()
    h.batch.add_publish("a", "g3", "", b"z", "r3")
    await h.batch.commit()
    assert [pb.MsgProto.FromString(p).data for s, p in h.sent if s == "in.a"] == [b"z"]
    assert ch.msgs.last_sequence() == 2


async def test_io_path_writes_out_when_its_round_ends() -> None:
    """What a round of the I/O task sent goes to the connection's writer as
    the round ends (not a loop turn later, behind the next reads)."""
    from nss.server.io import IOPath

    h = Harness()
    h.subscribe("a", "in.a")
    written: list[list[str]] = []
    done = asyncio.Event()

    def flush() -> None:
        written.append([s for s, _ in h.sent])
        done.set()

    io = IOPath(h.batch, 1024, 0, get_logger(), flush)
    io.start()
    try:
        await asyncio.sleep(0)  # the task parks on its empty queue
        io.publish(("c", "g1", "a", "", b"x", b""), "r1")
        await asyncio.wait_for(done.wait(), 5)
        assert written == [["in.a", "r1"]]
    finally:
        io.abort()


async def test_reset_after_a_bug_keeps_what_the_batch_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a bug in the I/O path the batch is reset: its messages are
    stored all the same (no PubAck went out, so a publisher sends again: at
    least once), and a store refusing them then says so in the log."""
    h = Harness()
    errors: list[str] = []

    class Log:
        def error(self, msg: str) -> None:
            errors.append(msg)

    h.batch._log = Log()
    h.batch.add_publish("a", "g1", "", b"x", "r1")
    h.batch.add_publish("a", "g2", "", b"y", "r2")
    h.batch.reset()
    ch = h.channels.get("a")
    assert ch is not None
    assert [pb.MsgProto.FromString(ch.msgs.lookup(s) or b"").data for s in (1, 2)] == [b"x", b"y"]
    assert h.sent == [] and errors == []

    def refuse(first: int, tss: object, datas: list[bytes]) -> None:
        raise StoreError("no space left on device")

    monkeypatch.setattr(ch.msgs, "store_many", refuse)
    h.batch.add_publish("a", "g3", "", b"z", "r3")
    h.batch.reset()
    assert errors == [
        'Unable to store messages on channel "a" after an I/O path error: '
        "no space left on device"
    ]
    assert (ch.msgs.last_sequence(), ch.next_seq, h.sent) == (2, 3, [])
