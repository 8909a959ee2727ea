"""The compiled hot path and its Python twin give the same bytes.

``nss.hot._compiled`` (Cython) and ``nss.hot.pure`` are two implementations
of the per-message work. Here they are held to the protobuf library, to
zlib, and to each other: same encodings, same decodings (or the compiled one
declines and the caller takes the library's path), and the same files on
disk and messages on the wire from a store and a publish batch run with
each. Without a built extension (``NSS_PURE=1``, or no compiler) the
comparisons against the library still run for the pure one.
"""

from __future__ import annotations

import asyncio
import os
import random
import struct
import zlib
from array import array
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from nss import hot
from nss.hot import framing, pure
from nss.log import get_logger
from nss.options import FileOptions, StoreLimits
from nss.pb import protocol_pb2 as pb
from nss.pb import spb_pb2 as spb
from nss.server import batch as batch_mod
from nss.server.batch import PublishBatch
from nss.server.core.channels import ChannelRegistry
from nss.server.core.model import Client
from nss.server.core.subscriptions import attach, create_or_resume
from nss.server.delivery import Deliverer
from nss.stores.file import FileStore
from nss.stores.file import msglog as msglog_mod
from nss.stores.file import subs as subs_mod
from nss.stores.memory import MemoryStore

IMPLS = [pytest.param(pure, id="pure")]
if hot.COMPILED:
    IMPLS.append(pytest.param(hot.impl, id="compiled"))

needs_compiled = pytest.mark.skipif(not hot.COMPILED, reason="compiled hot path not built")

CASTAGNOLI = 0x82F63B78


def rnd_str(r: random.Random, n: int) -> str:
    return "".join(r.choice("abcXYZ.09_-éü€") for _ in range(n))


# ------------------------------------------------------------ encoders


@pytest.mark.parametrize("impl", IMPLS)
def test_msgproto_as_protobuf_writes_it(impl: ModuleType) -> None:
    r = random.Random(1)
    cases = [(0, "", "", b"", 0), (1, "foo", "", b"x" * 128, 1_700_000_000_000_000_000)]
    cases += [(2**64 - 1, "a", "r", b"\0", -1), (300, "ü", "", b"", 2**63 - 1)]
    for _ in range(300):
        cases.append(
            (
                r.choice([0, 1, 127, 128, r.randrange(2**64)]),
                rnd_str(r, r.randrange(40)),
                rnd_str(r, r.choice([0, 0, 5, 200])),
                os.urandom(r.choice([0, 1, 127, 128, 16383, 16384, r.randrange(70000)])),
                r.choice([0, -(2**63), r.randrange(-(2**63), 2**63)]),
            )
        )
    for seq, subject, reply, data, ts in cases:
        want = pb.MsgProto(
            sequence=seq, subject=subject, reply=reply, data=data, timestamp=ts
        ).SerializeToString()
        assert impl.encode_msgproto(seq, subject, reply, data, ts) == want


@pytest.mark.parametrize("impl", IMPLS)
def test_puback_as_protobuf_writes_it(impl: ModuleType) -> None:
    for guid in ["", "g", "x" * 127, "x" * 128, "ü" * 300]:
        for error in ["", "stan: invalid publish request", "e" * 200]:
            want = pb.PubAck(guid=guid, error=error).SerializeToString()
            assert impl.encode_puback(guid, error) == want


@pytest.mark.parametrize("impl", IMPLS)
def test_pub_frame(impl: ModuleType) -> None:
    buf = bytearray(b"PING\r\n")
    impl.append_pub(buf, "in.box", "", b"hello")
    impl.append_pub(buf, "ü.x", "reply.1", b"")
    impl.append_pub(buf, "s", "", b"\r\n" * 6000)
    assert bytes(buf) == (
        b"PING\r\nPUB in.box 5\r\nhello\r\n"
        + "PUB ü.x reply.1 0\r\n\r\n".encode()
        + b"PUB s 12000\r\n"
        + b"\r\n" * 6000
        + b"\r\n"
    )


class _Part:
    def __init__(self, error: str) -> None:
        self.error = error


@pytest.mark.parametrize("impl", IMPLS)
def test_pubacks_framed_in_one_call(impl: ModuleType) -> None:
    """(reply, guid, part, error) as the batch keeps them: the error of the
    entry, else the error of its channel's part, else none."""
    pubacks = [
        ("r1", "g1", _Part(""), ""),
        ("r2", "g2", None, "too big"),
        ("r3", "g3", _Part("disk full"), ""),
        ("r4", "ü" * 100, None, ""),
    ]
    buf = bytearray()
    impl.append_pubacks(buf, pubacks)
    want = bytearray()
    for reply, guid, error in [
        ("r1", "g1", ""),
        ("r2", "g2", "too big"),
        ("r3", "g3", "disk full"),
        ("r4", "ü" * 100, ""),
    ]:
        pure.append_pub(want, reply, "", pb.PubAck(guid=guid, error=error).SerializeToString())
    assert buf == want


# ------------------------------------------------------------ decoders


def pubmsgs(r: random.Random) -> list[bytes]:
    out = [b"", pb.PubMsg(clientID="c", guid="g", subject="foo", data=b"x").SerializeToString()]
    for _ in range(300):
        out.append(
            pb.PubMsg(
                clientID=rnd_str(r, r.randrange(20)),
                guid=rnd_str(r, r.randrange(30)),
                subject=rnd_str(r, r.randrange(30)),
                reply=rnd_str(r, r.choice([0, 10])),
                data=os.urandom(r.choice([0, 1, 200, 20000])),
                connID=os.urandom(r.choice([0, 22])),
                sha256=os.urandom(r.choice([0, 32])),
            ).SerializeToString()
        )
    return out


def mutations(r: random.Random, good: list[bytes]) -> list[bytes]:
    """Damaged messages: flipped bytes, cuts, unknown fields, wrong wire
    types, repeated fields, bad UTF-8."""
    out = []
    for m in good[:150]:
        if m:
            b = bytearray(m)
            b[r.randrange(len(b))] = r.randrange(256)
            out.append(bytes(b))
            out.append(m[: r.randrange(len(m))])
        out.append(m + b"\x38\x05")  # unknown varint field 7
        out.append(m + b"\x18\x01")  # field 3 as a varint
        out.append(m + b"\x1a\x02\xff\xfe")  # field 3 again, not UTF-8
        out.append(m + b"\x12\x01z")  # field 2 again: the last one wins
    out += [os.urandom(r.randrange(1, 60)) for _ in range(300)]
    return out


@needs_compiled
def test_pubmsg_decoder_agrees_with_protobuf() -> None:
    r = random.Random(2)
    good = pubmsgs(r)
    declined = 0
    for m in good + mutations(r, good):
        fast = hot.decode_pubmsg(m)
        slow = pure.decode_pubmsg(m)
        if fast is None:
            declined += 1
        else:
            assert fast == slow, m
    for m in good:
        assert hot.decode_pubmsg(m) == pure.decode_pubmsg(m) is not None
    assert declined  # the damaged ones were not all taken


@needs_compiled
def test_ack_decoder_agrees_with_protobuf() -> None:
    r = random.Random(3)
    good = [
        pb.Ack(
            subject=rnd_str(r, r.randrange(30)), sequence=r.choice([0, 1, r.randrange(2**64)])
        ).SerializeToString()
        for _ in range(300)
    ]
    for m in good:
        assert hot.decode_ack(m) == pure.decode_ack(m) is not None
    for m in mutations(r, good):
        fast = hot.decode_ack(m)
        if fast is not None:
            assert fast == pure.decode_ack(m), m


@pytest.mark.parametrize("impl", IMPLS)
def test_ack_handler_acks_its_channel_only(impl: ModuleType) -> None:
    """What reaches the I/O path is the same whichever handler runs: the fast
    decoder's Acks of the subscription's channel, and what the library makes
    of everything else (the server's slow path, as ``ServerContext._other_ack``)."""
    r = random.Random(7)
    got: list[tuple[str, int]] = []

    def slow(sub: str, payload: bytes) -> None:
        ack = pure.decode_ack(payload)
        if ack is not None and ack[0] == "foo.é":
            got.append((sub, ack[1]))
        elif ack is None:
            got.append((sub, -1))

    h = impl.AckHandler("s", "foo.é", lambda sub, seq: got.append((sub, seq)), slow)
    good = [pb.Ack(subject="foo.é", sequence=i).SerializeToString() for i in (0, 1, 2**64 - 1)]
    other = [pb.Ack(subject=s, sequence=5).SerializeToString() for s in ("foo", "foo.éx", "")]
    payloads = good + other + mutations(r, good + other)
    want: list[tuple[str, int]] = []
    for m in payloads:
        ack = pure.decode_ack(m)
        if ack is None:
            want.append(("s", -1))
        elif ack[0] == "foo.é":
            want.append(("s", ack[1]))
        h(b"ack", b"", m)
    assert got == want
    assert got[:3] == [("s", 0), ("s", 1), ("s", 2**64 - 1)]


@pytest.mark.parametrize("impl", IMPLS)
def test_publish_fast_path_takes_only_the_usual_publish(impl: ModuleType) -> None:
    """A known connID, a guid and a channel name seen valid: to the I/O path,
    counted; anything else to the Python handler, uncounted here."""
    fast: list[Any] = []
    other: list[bytes] = []
    valid = {"foo"}
    h = impl.PublishFastPath(
        {b"conn": object()},
        valid,
        lambda pm, r: fast.append((pm, r)),
        lambda s, r, p: other.append(p),
    )

    def pub(**kw: Any) -> bytes:
        base: dict[str, Any] = {"clientID": "c", "connID": b"conn", "guid": "g", "subject": "foo"}
        return pb.PubMsg(**{**base, **kw}).SerializeToString()

    usual = pub(data=b"x" * 10, reply="r")
    h(b"_STAN.pub.x.foo", b"ack.1", usual)
    h(b"_STAN.pub.x.foo", b"", usual)
    assert fast == [
        (("c", "g", "foo", "r", b"x" * 10, b"conn"), "ack.1"),
        (("c", "g", "foo", "r", b"x" * 10, b"conn"), ""),
    ]
    assert (h.in_msgs, h.in_bytes) == (2, 2 * len(usual))
    unusual = [
        pub(connID=b"other"),  # unknown connection
        pub(connID=b""),  # an old client: by client ID, the long way
        pub(guid=""),
        pub(subject="bar"),  # a name not checked yet
        pub(subject="foo.*"),
        b"\xff\x01",  # not a PubMsg
    ]
    for p in unusual:
        h(b"_STAN.pub.x.y", b"r", p)
    assert other == unusual and len(fast) == 2 and h.in_msgs == 2
    valid.add("bar")  # the handler learnt the name
    h(b"_STAN.pub.x.bar", b"r", pub(subject="bar"))
    assert len(fast) == 3


# ------------------------------------------------------------ FILE records


@pytest.mark.parametrize("impl", IMPLS)
def test_crc_is_gos(impl: ModuleType) -> None:
    r = random.Random(4)
    for n in [0, 1, 7, 8, 9, 63, 64, 1000, 100_000]:
        d = r.randbytes(n)
        assert impl.crc32(d, framing.IEEE_POLY) == zlib.crc32(d)
        assert impl.crc32(d, CASTAGNOLI) == framing.make_crc(CASTAGNOLI)(d)


@needs_compiled
@pytest.mark.parametrize("poly", [framing.IEEE_POLY, CASTAGNOLI])
def test_records_identical(poly: int) -> None:
    r = random.Random(5)
    bufs: dict[str, tuple[bytearray, bytearray, list[bytes]]] = {}
    for name, impl in (("pure", pure), ("compiled", hot.impl)):
        rr = random.Random(6)
        w, i, subs = bytearray(b"\1\0\0\0"), bytearray(b"\1\0\0\0"), []
        for _ in range(200):
            seq = rr.randrange(1, 2**63)
            data = rr.randbytes(rr.choice([0, 1, 128, 5000]))
            impl.append_msg_record(w, i, seq, len(w), rr.randrange(-(2**63), 2**63), data, poly)
            subs.append(impl.sub_record(rr.choice([4, 5]), rr.randrange(2**40), seq, poly))
        subs.append(impl.sub_record(3, 7, 0, poly))
        bufs[name] = (w, i, subs)
    assert bufs["pure"] == bufs["compiled"]
    assert r  # deterministic inputs, same for both


# ------------------------------------------------------------ parsers


@pytest.mark.parametrize("impl", IMPLS)
def test_parser_hands_messages_to_their_handler(impl: ModuleType) -> None:
    got: list[Any] = []
    errors: list[tuple[bytes, str]] = []

    def boom(subject: bytes, reply: bytes, payload: bytes) -> None:
        raise ValueError("boom")

    p = impl.Parser(
        on_msg=lambda *a: got.append(("msg", *a)),
        on_hmsg=lambda *a: got.append(("hmsg", *a)),
        on_ping=lambda: got.append("ping"),
        on_pong=lambda: None,
        on_info=lambda i: None,
        on_err=lambda e: None,
        on_callback_error=lambda s, e: errors.append((s, str(e))),
    )
    p.handlers[7] = lambda s, r, d: got.append(("raw", s, r, d))
    p.handlers[8] = boom
    stream = b"MSG a 7 r.1 3\r\nabc\r\nMSG b 8 0\r\n\r\n"
    stream += b"MSG  c  9   2\r\nxy\r\nPING\r\nMSG d 7 1\r\nz\r\n"
    for cut in range(len(stream)):
        got.clear()
        errors.clear()
        p.feed(stream[:cut])
        p.feed(stream[cut:])
        assert got == [
            ("raw", b"a", b"r.1", b"abc"),
            ("msg", 9, b"c", b"", b"xy"),
            "ping",
            ("raw", b"d", b"", b"z"),
        ]
        assert errors == [(b"b", "boom")]


@pytest.mark.parametrize("impl", IMPLS)
def test_parser_hands_acks_and_publishes_to_the_fast_handlers(impl: ModuleType) -> None:
    """The ack and publish handlers registered on a parser (which calls them
    in C when compiled) see what they see when called: the same acks and
    publishes, the long way for the rest, a handler's error to
    ``on_callback_error`` with the subject, and the stream goes on."""
    got: list[Any] = []
    errors: list[tuple[bytes, str]] = []

    def on_ack(sub: str, seq: int) -> None:
        if seq == 13:
            raise ValueError("unlucky")
        got.append(("ack", sub, seq))

    p = impl.Parser(
        on_msg=lambda *a: got.append(("msg", *a)),
        on_hmsg=lambda *a: None,
        on_ping=lambda: None,
        on_pong=lambda: None,
        on_info=lambda i: None,
        on_err=lambda e: None,
        on_callback_error=lambda s, e: errors.append((s, str(e))),
    )
    p.handlers[3] = impl.AckHandler(
        "s", "foo", on_ack, lambda sub, payload: got.append(("other ack", sub, payload))
    )
    p.handlers[4] = impl.PublishFastPath(
        {b"conn": object()},
        {"foo"},
        lambda pm, r: got.append(("pub", pm[1], r)),
        lambda s, r, payload: got.append(("other pub", s, r)),
    )

    def msg(subject: bytes, sid: int, reply: bytes, payload: bytes) -> bytes:
        sp = b" " + reply if reply else b""
        return b"MSG %s %d%s %d\r\n%s\r\n" % (subject, sid, sp, len(payload), payload)

    def ack(subject: str, seq: int) -> bytes:
        return pb.Ack(subject=subject, sequence=seq).SerializeToString()

    def pub(guid: str, conn: bytes = b"conn") -> bytes:
        return pb.PubMsg(clientID="c", guid=guid, subject="foo", connID=conn).SerializeToString()

    stream = b"".join(
        [
            msg(b"ack.in", 3, b"", ack("foo", 1)),
            msg(b"ack.in", 3, b"", ack("bar", 2)),  # another channel: the long way
            msg(b"ack.in", 3, b"", ack("foo", 13)),  # on_ack raises
            msg(b"ack.in", 3, b"r.x", b"\xff"),  # not an Ack
            msg(b"_STAN.pub.p.foo", 4, b"pa.1", pub("g1")),
            msg(b"_STAN.pub.p.foo", 4, b"pa.2", pub("g2", b"unknown")),
            msg(b"ack.in", 3, b"", ack("foo", 2)),
            b"MSG  ack.in  3   %d\r\n%s\r\n" % (len(ack("foo", 3)), ack("foo", 3)),
        ]
    )
    for cut in (0, 7, 40, 95, len(stream) - 3):
        got.clear()
        errors.clear()
        p.feed(stream[:cut])
        p.feed(stream[cut:])
        assert got == [
            ("ack", "s", 1),
            ("other ack", "s", ack("bar", 2)),
            ("other ack", "s", b"\xff"),
            ("pub", "g1", "pa.1"),
            ("other pub", b"_STAN.pub.p.foo", b"pa.2"),
            ("ack", "s", 2),
            ("ack", "s", 3),
        ]
        assert errors == [(b"ack.in", "unlucky")]


# ------------------------------------------------------------ whole units


async def _file_store_bytes(root: Path, impl: ModuleType, poly: int) -> dict[str, bytes]:
    """Messages and subscription records through a real FILE store with the
    record framing of ``impl``; every file's bytes afterwards."""
    mp = pytest.MonkeyPatch()
    mp.setattr(msglog_mod, "append_msg_record", impl.append_msg_record)
    mp.setattr(msglog_mod, "append_msg_records", impl.append_msg_records)
    mp.setattr(subs_mod, "append_sub_ops", impl.append_sub_ops)
    try:
        fs = FileStore(str(root), StoreLimits(), FileOptions(do_sync=False, crc_poly=poly))
        assert fs.recover() is None
        fs.init(spb.ServerInfo(ClusterID="t", Discovery="d", Publish="p"))
        cs = fs.create_channel("foo")
        sub = spb.SubState(clientID="c", inbox="in", ackInbox="ack", maxInFlight=9)
        cs.subs.create_sub(sub)
        batch: list[bytes] = []
        for seq in range(1, 301):
            data = impl.encode_msgproto(seq, "foo", "", bytes([seq % 256]) * seq, seq * 1000)
            if seq <= 100:
                cs.msgs.store(seq, seq * 1000, data)
            else:  # as a publish batch stores them: 10 at a time
                batch.append(data)
                if len(batch) == 10:
                    first = seq - 9
                    cs.msgs.store_many(first, [q * 1000 for q in range(first, seq + 1)], batch)
                    batch = []
            cs.subs.add_seq_pending(sub.ID, seq)
            if seq % 3:
                cs.subs.ack_seq_pending(sub.ID, seq)
        await cs.msgs.flush()
        await cs.subs.flush()
        await fs.close()
    finally:
        mp.undo()
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@needs_compiled
@pytest.mark.parametrize("poly", [framing.IEEE_POLY, CASTAGNOLI])
async def test_file_store_writes_identical_files(tmp_path: Path, poly: int) -> None:
    a = await _file_store_bytes(tmp_path / "pure", pure, poly)
    b = await _file_store_bytes(tmp_path / "compiled", hot.impl, poly)
    assert a.keys() == b.keys() and "foo/msgs.1.dat" in a
    assert a == b


def _memory_batch(
    max_payload: int, store: Any = None
) -> tuple[ChannelRegistry, PublishBatch, list[tuple[str, bytes]]]:
    """MEMORY channels (or those of ``store``), a deliverer and a publish
    batch whose sends are recorded in the list returned."""
    channels = ChannelRegistry(store or MemoryStore(StoreLimits()))
    sent: list[tuple[str, bytes]] = []

    def send(subject: str, payload: bytes) -> None:
        sent.append((subject, payload))

    def send_many(subject: str, payloads: list[bytes]) -> None:
        sent.extend((subject, p) for p in payloads)

    deliverer = Deliverer(send, lambda sub: None, asyncio.get_running_loop(), send_many)
    b = PublishBatch(
        lambda n: channels.lookup_or_create(n)[0], deliverer, send, lambda ch: None,
        max_payload, get_logger(),
    )  # fmt: skip
    return channels, b, sent


async def _batch_wire(impl: ModuleType, mp: pytest.MonkeyPatch) -> list[tuple[str, bytes]]:
    mp.setattr(batch_mod, "encode_msgproto", impl.encode_msgproto)
    mp.setattr(batch_mod, "encode_puback", impl.encode_puback)
    channels, b, sent = _memory_batch(4096)
    ch, _ = channels.lookup_or_create("foo")
    client = Client("c", "hb")
    req = pb.SubscriptionRequest(
        clientID="c", subject="foo", inbox="in", maxInFlight=1000, ackWaitInSecs=30
    )
    sub = create_or_resume(ch, client, req, "ack.in").sub
    attach(sub, client)
    sub.initialized = True
    for i in range(50):
        b.add_publish("foo", f"guid-{i}", "r" if i % 2 else "", bytes(i), f"ack.{i}")
    b.add_publish("foo", "too-big", "", b"x" * 5000, "ack.big")
    await b.commit()
    ch.next_seq = ch.last_ts = 0  # the same stamps for both runs
    sub.cancel_timer()
    return [(s, p) for s, p in sent]


@needs_compiled
async def test_publish_batch_sends_identical_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch_mod.time, "time_ns", lambda: 1_700_000_000_000_000_000)
    a = await _batch_wire(pure, monkeypatch)
    b = await _batch_wire(hot.impl, monkeypatch)
    assert len(a) == 101 and a == b


def test_which_path_runs_is_said() -> None:
    """``NSS_PURE=1`` gives the Python path whatever was built."""
    assert hot.COMPILED == (hot.impl is not pure)
    if os.environ.get("NSS_PURE") == "1":
        assert not hot.COMPILED


def test_file_options_default_poly_is_ieee() -> None:
    assert replace(FileOptions()).crc_poly == framing.IEEE_POLY


# ------------------------------------------------------- DirectBatch, send_span


def _unstamped(payload: bytes) -> bytes:
    """A MsgProto without its timestamp (each twin reads the clock itself)."""
    m = pb.MsgProto.FromString(payload)
    m.timestamp = 0
    return m.SerializeToString()


def _send_one_by_one(deliverer: Any, sub: Any, msgs: Any, seq: int, last: int) -> None:
    """The delivery loop as it was before ``send_span``: a message at a time."""
    import time

    deadline = time.time() + sub.ack_wait
    while seq <= last:
        if len(sub.pending) >= sub.max_inflight:
            sub.stalled = True
            return
        data = msgs.lookup(seq)
        if data is not None:
            deliverer.publish_many(sub.inbox, [data])
            deliverer.out_msgs += 1
            deliverer.out_bytes += len(data)
            if seq not in sub.pending:
                sub.channel.subs_store.add_seq_pending(sub.id, seq)
                sub.last_sent = max(sub.last_sent, seq)
                sub.pending[seq] = deadline
                if sub.timer is None:
                    deliverer._arm(sub, sub.ack_wait)
            if len(sub.pending) >= sub.max_inflight:
                sub.stalled = True
                return
        elif seq > sub.last_sent:
            sub.last_sent = seq
        seq += 1


async def _direct_run(
    impl: ModuleType, seed: int, mp: pytest.MonkeyPatch, send: Any = None, root: Path | None = None
) -> Any:
    """A random stream of publishes and acks through ``impl.DirectBatch``
    (deliveries by ``send``, else ``impl.send_span``)
    into a real batch, I/O path, deliverer and MEMORY channels, or FILE ones
    in ``root`` (parked and busy I/O task, a channel new to the batch,
    payloads over the limit, a queue group, unknown and repeated acks,
    MaxInFlight stalls); what a client would see and what the server holds
    at the end (with FILE, the subs.dat files too: the message files hold
    each run's own timestamps)."""
    from nss.server import delivery as delivery_mod
    from nss.server.io import IOPath

    mp.setattr(delivery_mod, "send_span", send or impl.send_span)
    r = random.Random(seed)
    store = None
    if root is not None:
        mp.setattr(subs_mod, "AckNoter", impl.AckNoter)
        mp.setattr(subs_mod, "append_sub_ops", impl.append_sub_ops)
        mp.setattr(msglog_mod, "append_msg_records", impl.append_msg_records)
        store = FileStore(str(root), StoreLimits(), FileOptions(do_sync=False))
        assert store.recover() is None
        store.init(spb.ServerInfo(ClusterID="t", Discovery="d", Publish="p"))
    channels, b, sent = _memory_batch(300, store)
    deliverer = b._deliverer
    io = IOPath(b, 1024, 0, get_logger())
    direct = impl.DirectBatch(io)
    client = Client("c", "hb")
    subs = []
    for i, (subject, group, inflight) in enumerate(
        [("foo", "", 7), ("foo", "", 1000), ("bar", "g", 3), ("bar", "g", 5)]
    ):
        ch, _ = channels.lookup_or_create(subject)
        req = pb.SubscriptionRequest(
            clientID="c",
            subject=subject,
            qGroup=group,
            inbox=f"in.{i}",
            maxInFlight=inflight,
            ackWaitInSecs=30,
        )
        sub = create_or_resume(ch, client, req, f"ack.{i}").sub
        attach(sub, client)
        sub.initialized = True
        subs.append(sub)
    n = 0
    for _ in range(40):
        io._open = r.choice([0, 3, 1024])
        for _ in range(r.randint(1, 25)):
            if r.random() < 0.55:
                n += 1
                subject = r.choice(["foo", "bar", "baz"])
                size = r.choice([0, 10, 100, 400])
                pm = ("c", f"g{n}", subject, r.choice(["", "rep"]), bytes(size), b"conn")
                direct.publish(pm, r.choice(["", f"pa.{n}"]))
            else:
                sub = r.choice(subs)
                seqs = list(sub.pending) or [1]
                direct.ack(sub, r.choice(seqs + [999]))
        await io._process()
    for s in subs:
        s.cancel_timer()
    wire = [(s, _unstamped(p) if s.startswith("in.") else p) for s, p in sent]
    held = {
        name: [_unstamped(ch.msgs.lookup(q) or b"") for q in range(1, ch.next_seq)]
        for name, ch in channels.channels.items()
    }
    state = [(sorted(s.pending), s.last_sent, s.stalled) for s in subs]
    files = {}
    if store is not None:
        await store.close()
        assert root is not None
        files = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("subs.dat"))}
    return wire, held, state, deliverer.out_msgs, deliverer.out_bytes, files


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("seed", range(6))
async def test_direct_batch_and_send_span_do_what_the_io_path_does(
    impl: ModuleType, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reference: the pure DirectBatch (the I/O path's own way) with
    deliveries one message at a time, as before ``send_span``."""
    a = await _direct_run(pure, seed, monkeypatch, send=_send_one_by_one)
    b = await _direct_run(impl, seed, monkeypatch)
    assert len(a[0]) > 50 and a == b


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("seed", range(3))
async def test_direct_batch_on_file_channels_writes_what_the_io_path_does(
    impl: ModuleType, seed: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The same on FILE channels: the acks the compiled DirectBatch notes
    in C (``AckNoter``) leave subs.dat byte for byte as the pure path's
    method calls do, and the same pending sets after a restart."""
    a = await _direct_run(pure, seed, monkeypatch, _send_one_by_one, tmp_path / "a")
    monkeypatch.undo()
    b = await _direct_run(impl, seed, monkeypatch, root=tmp_path / "b")
    assert len(a[0]) > 50 and any(n.endswith("subs.dat") and len(v) > 200 for n, v in a[5].items())
    assert a[5] == b[5]
    assert a[1:5] == b[1:5]
    recovered = []
    for root in (tmp_path / "a", tmp_path / "b"):
        fs = FileStore(str(root), StoreLimits(), FileOptions(do_sync=False))
        rs = fs.recover()
        assert rs is not None
        recovered.append(
            {n: sorted((r.sub.ID, sorted(r.pending)) for r in c.subscriptions)
             for n, c in rs.channels.items()}
        )  # fmt: skip
        fs.close_sync()
    assert recovered[0] == recovered[1] and any(any(p for _, p in v) for v in recovered[0].values())


@pytest.mark.parametrize("impl", IMPLS)
def test_direct_batch_sends_other_classes_the_long_way(impl: ModuleType) -> None:
    """An I/O path that is not the server's (no ``__slots__`` to read in C)
    gets every publish and ack through its own ``publish`` and ``ack``."""

    class LooseIO:
        def __init__(self) -> None:
            self.batch = object()
            self._open = 5
            self.got: list[tuple[Any, ...]] = []

        def publish(self, pm: tuple[Any, ...], reply: str) -> None:
            self.got.append(("pub", pm[1], reply))

        def ack(self, sub: Any, seq: int) -> None:
            self.got.append(("ack", sub, seq))

    io = LooseIO()
    direct = impl.DirectBatch(io)
    direct.publish(("c", "g1", "foo", "", b"x", b"conn"), "r1")
    direct.ack("sub", 3)
    assert io.got == [("pub", "g1", "r1"), ("ack", "sub", 3)]


@pytest.mark.parametrize("impl", IMPLS)
def test_sub_ops_are_the_records_one_by_one(impl: ModuleType) -> None:
    r = random.Random(7)
    ops: list[int] = []
    kinds = bytearray()
    for _ in range(500):
        sid = r.choice([0, 1, 300, 2**40])
        seq = r.choice([0, 5, 2**20, 2**63 - 1])
        ops += [sid, seq]
        kinds.append(r.random() < 0.5)
    want = b"".join(
        pure.sub_record(4 if kind else 5, sid, seq, CASTAGNOLI)
        for sid, seq, kind in zip(ops[0::2], ops[1::2], kinds, strict=True)
    )
    buf = bytearray(b"head")
    assert impl.append_sub_ops(buf, ops, kinds, 5, 4, CASTAGNOLI) == sum(kinds)
    assert buf == b"head" + want
    # a value that is no uint64, or kinds that do not match: nothing written
    for bad_ops, bad_kinds in (([1, -1], bytearray(1)), ([1, 2], bytearray(2))):
        with pytest.raises((OverflowError, ValueError)):
            impl.append_sub_ops(buf, bad_ops, bad_kinds, 5, 4, CASTAGNOLI)
        assert buf == b"head" + want


@pytest.mark.parametrize("impl", IMPLS)
def test_msg_records_framed_in_one_call(impl: ModuleType) -> None:
    r = random.Random(3)
    datas = [r.randbytes(r.choice([0, 1, 128, 5000])) for _ in range(50)]
    tss = [r.randrange(-(2**63), 2**63) for _ in datas]
    w, i = bytearray(b"v"), bytearray(b"ix")
    offset = 12345
    for k, (ts, data) in enumerate(zip(tss, datas, strict=True)):
        pure.append_msg_record(w, i, 77 + k, offset, ts, data, CASTAGNOLI)
        offset += 8 + len(data)
    w2, i2 = bytearray(b"v"), bytearray(b"ix")
    total = impl.append_msg_records(w2, i2, 77, 12345, tss, datas, CASTAGNOLI)
    assert (w2, i2, total) == (w, i, sum(map(len, datas)))
    # the timestamps as a publish batch keeps them
    w3, i3 = bytearray(b"v"), bytearray(b"ix")
    impl.append_msg_records(w3, i3, 77, 12345, array("q", tss), datas, CASTAGNOLI)
    assert (w3, i3) == (w, i)
    # a bad value is refused before anything is framed: no half record
    bad = [([1, "x"], [b"a", b"b"]), ([1, 2], [b"a", "b"]), ([1], [b"a", b"b"])]
    for bad_tss, bad_datas in bad:
        with pytest.raises((TypeError, ValueError, struct.error)):
            impl.append_msg_records(w2, i2, 1, 0, bad_tss, bad_datas, CASTAGNOLI)
        assert (w2, i2) == (w, i)


@pytest.mark.parametrize("impl", IMPLS)
def test_pubs_framed_all_or_none(impl: ModuleType) -> None:
    buf = bytearray(b"x")
    assert impl.append_pubs(buf, "in.1", [b"ab", b"", b"cde"], 3)
    assert buf == b"xPUB in.1 2\r\nab\r\nPUB in.1 0\r\n\r\nPUB in.1 3\r\ncde\r\n"
    assert not impl.append_pubs(buf, "in.1", [b"ab", b"cdef"], 3)
    assert buf == b"xPUB in.1 2\r\nab\r\nPUB in.1 0\r\n\r\nPUB in.1 3\r\ncde\r\n"
