"""The per-message byte work in Python: what ``nss.hot`` uses where the
compiled module was not built (no C compiler) or ``NSS_PURE=1`` asks for it.

It gives the same bytes and the same answers as ``_compiled.pyx``; the
tests run both. The decoders use the protobuf library (upb, in C) and, like
the compiled ones, return None for what they do not take (the caller then
decodes the message the long way and judges it as before)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from google.protobuf.message import DecodeError

from nss.hot.framing import IDX_BODY, REC_HDR, U32, CrcFunc, encode_id_seq, make_crc
from nss.nats.parser import Parser
from nss.pb import protocol_pb2 as pb

__all__ = [
    "AckHandler",
    "AckNoter",
    "DirectBatch",
    "Parser",
    "PublishFastPath",
    "append_msg_record",
    "append_msg_records",
    "append_pub",
    "append_pubacks",
    "append_pubs",
    "append_sub_ops",
    "crc32",
    "decode_ack",
    "decode_pubmsg",
    "encode_msgproto",
    "encode_puback",
    "send_span",
    "sub_record",
]

_PubMsg = pb.PubMsg
_Ack = pb.Ack
_MsgProto = pb.MsgProto
_PubAck = pb.PubAck


def decode_pubmsg(payload: bytes) -> tuple[str, str, str, str, bytes, bytes] | None:
    try:
        m = _PubMsg.FromString(payload)
    except DecodeError:
        return None
    return m.clientID, m.guid, m.subject, m.reply, m.data, m.connID


def decode_ack(payload: bytes) -> tuple[str, int] | None:
    try:
        m = _Ack.FromString(payload)
    except DecodeError:
        return None
    return m.subject, m.sequence


def encode_msgproto(seq: int, subject: str, reply: str, data: bytes, ts: int) -> bytes:
    return _MsgProto(
        sequence=seq, subject=subject, reply=reply, data=data, timestamp=ts
    ).SerializeToString()


def encode_puback(guid: str, error: str = "") -> bytes:
    if not error:
        g = guid.encode()
        n = len(g)
        if 0 < n < 0x80:
            return b"\x0a" + bytes((n,)) + g
    return _PubAck(guid=guid, error=error).SerializeToString()


def append_pub(buf: bytearray, subject: str, reply: str, payload: bytes) -> None:
    if reply:
        buf += f"PUB {subject} {reply} {len(payload)}\r\n".encode()
    else:
        buf += f"PUB {subject} {len(payload)}\r\n".encode()
    buf += payload
    buf += b"\r\n"


def append_pubs(buf: bytearray, subject: str, payloads: list[bytes], max_payload: int) -> bool:
    """A PUB of each payload to ``subject``, or none at all (False) when one
    is over ``max_payload``."""
    for p in payloads:
        if len(p) > max_payload:
            return False
    for p in payloads:
        append_pub(buf, subject, "", p)
    return True


@lru_cache(maxsize=4)
def _crc_func(poly: int) -> CrcFunc:
    return make_crc(poly)


def crc32(data: bytes | bytearray | memoryview, poly: int) -> int:
    return _crc_func(poly)(data)


def append_msg_record(
    wbuf: bytearray, ibuf: bytearray, seq: int, offset: int, ts: int, data: bytes, poly: int
) -> None:
    crc = _crc_func(poly)
    n = len(data)
    wbuf += REC_HDR.pack(n, crc(data))
    wbuf += data
    body = IDX_BODY.pack(seq, offset, ts, n)
    ibuf += body
    ibuf += U32.pack(crc(body))


def append_msg_records(
    wbuf: bytearray,
    ibuf: bytearray,
    first: int,
    offset: int,
    tss: Sequence[int],
    datas: list[bytes],
    poly: int,
) -> int:
    """``append_msg_record`` for messages ``first``, ``first + 1``, ... written
    one after the other from ``offset``; their payload bytes in all."""
    # framed aside first: a bad value leaves no half record in the buffers
    w, x = bytearray(), bytearray()
    total = 0
    for k, (ts, data) in enumerate(zip(tss, datas, strict=True)):
        append_msg_record(w, x, first + k, offset, ts, data, poly)
        offset += REC_HDR.size + len(data)
        total += len(data)
    wbuf += w
    ibuf += x
    return total


def sub_record(rtype: int, sub_id: int, seq: int, poly: int) -> bytes:
    payload = encode_id_seq(sub_id, seq)
    return REC_HDR.pack((rtype << 24) | len(payload), _crc_func(poly)(payload)) + payload


def append_sub_ops(
    buf: bytearray, ops: list[int], kinds: bytearray, msg_type: int, ack_type: int, poly: int
) -> int:
    """The ``subs.dat`` records of noted operations ``[sub ID, seq, ...]``
    onto ``buf``: per pair, a pending record where ``kinds`` holds 0, an ack
    record where it holds 1; how many were acks."""
    if len(ops) % 2 or len(kinds) != len(ops) // 2:
        raise ValueError("ops holds pairs, and kinds one byte per pair")
    out = bytearray()
    acks = 0
    for sid, seq, kind in zip(ops[0::2], ops[1::2], kinds, strict=True):
        out += sub_record(ack_type if kind else msg_type, sid, seq, poly)
        acks += kind != 0
    buf += out  # all or nothing, as the compiled twin
    return acks


class AckNoter:
    """A FILE subscription store's ``ack_seq_pending``: notes the ack record
    (sub ID and seq in the store's list of pending/ack operations, kind 1
    beside them), drops the sequence from the sub's pending set, and has the
    store encode the list once it holds ``limit`` entries.

    The store makes one over its own list and sets, whose identities stay
    (the store clears them in place), and calls it as its method; the
    compiled DirectBatch recognises the compiled twin and runs it in C,
    so an ack costs no Python call there."""

    __slots__ = ("encode", "kinds", "limit", "ops", "pending")

    def __init__(
        self,
        ops: list[int],
        kinds: bytearray,
        pending: dict[int, set[int]],
        encode: Any,
        limit: int,
    ) -> None:
        self.ops = ops
        self.kinds = kinds
        self.pending = pending
        self.encode = encode
        self.limit = limit

    def __call__(self, sub_id: int, seq: int) -> None:
        ops = self.ops
        ops.append(sub_id)
        ops.append(seq)
        self.kinds.append(1)
        p = self.pending.get(sub_id)
        if p is not None:
            p.discard(seq)
        if len(ops) >= self.limit:
            self.encode()


def append_pubacks(buf: bytearray, pubacks: list[tuple[str, str, Any, str]]) -> None:
    for reply, guid, part, error in pubacks:
        if not error and part is not None:
            error = part.error
        append_pub(buf, reply, "", encode_puback(guid, error))


class AckHandler:
    """The raw NATS callback of one subscription's ack inbox (as the
    compiled one): an Ack of the subscription's channel goes to
    ``on_ack(sub, seq)``; anything else to ``on_other(sub, payload)``."""

    __slots__ = ("channel", "on_ack", "on_other", "sub")

    def __init__(
        self,
        sub: Any,
        channel: str,
        on_ack: Callable[[Any, int], None],
        on_other: Callable[[Any, bytes], None],
    ) -> None:
        self.sub = sub
        self.channel = channel
        self.on_ack = on_ack
        self.on_other = on_other

    def __call__(self, _subject: bytes, _reply: bytes, payload: bytes) -> None:
        ack = decode_ack(payload)
        if ack is None or ack[0] != self.channel:
            self.on_other(self.sub, payload)
        else:
            self.on_ack(self.sub, ack[1])


class PublishFastPath:
    """The raw NATS callback of the publish subject (as the compiled one):
    the usual publish goes to ``publish(fields, reply)``, everything else to
    ``other(subject, reply, payload)``."""

    __slots__ = ("by_conn", "in_bytes", "in_msgs", "other", "publish", "valid")
    raw = True

    def __init__(
        self,
        by_conn: dict[bytes, Any],
        valid: set[str],
        publish: Callable[[tuple[str, str, str, str, bytes, bytes], str], None],
        other: Callable[[bytes, bytes, bytes], None],
    ) -> None:
        self.by_conn = by_conn
        self.valid = valid
        self.publish = publish
        self.other = other
        self.in_msgs = 0
        self.in_bytes = 0

    def __call__(self, subject: bytes, reply: bytes, payload: bytes) -> None:
        pm = decode_pubmsg(payload)
        if pm is not None:
            conn_id = pm[5]
            if pm[1] and conn_id and pm[2] in self.valid and conn_id in self.by_conn:
                self.in_msgs += 1
                self.in_bytes += len(payload)
                self.publish(pm, reply.decode() if reply else "")
                return
        self.other(subject, reply, payload)


class DirectBatch:
    """The raw publish and ack callbacks' way into the I/O path (as the
    compiled one, which does the usual publish and ack itself while the I/O
    task is parked): here both go to ``io.publish`` and ``io.ack``, whose own
    shortcut puts them straight into the batch then. The compiled twin is
    held to this by ``tests/unit/test_hot.py``."""

    __slots__ = ("ack", "publish")

    def __init__(self, io: Any) -> None:
        self.publish = io.publish
        self.ack = io.ack


def send_span(deliverer: Any, sub: Any, msgs: Any, seq: int, last: int) -> None:
    """Send a plain subscription the stored messages ``seq``..``last`` it
    has room for (MaxInFlight): the loop of ``Deliverer.deliver_sub``.

    In two steps: the messages are looked up and the window decided first,
    then they are published in one call and recorded pending. A failure of
    either step (a store read, a payload over the NATS limit) leaves the
    subscription as it was, to be tried again by the next delivery."""
    lookup_many = msgs.lookup_many
    pending = sub.pending
    max_inflight = sub.max_inflight
    room = max_inflight - len(pending)
    last_sent = sub.last_sent
    datas: list[bytes] = []
    new: list[int] = []
    stalled = False
    while seq <= last:
        if room <= 0:
            stalled = True
            break
        # no more at once than the window could take: a gap or a message
        # already pending takes no room, so another span may follow
        for data in lookup_many(seq, min(last, seq + room - 1)):
            if data is not None:
                datas.append(data)
                if seq not in pending:
                    new.append(seq)
                    if seq > last_sent:
                        last_sent = seq
                    room -= 1
                if room <= 0:
                    stalled = True
                    break
            elif seq > last_sent:
                last_sent = seq
            seq += 1
        if stalled:
            break
    if datas:
        deliverer.publish_many(sub.inbox, datas)
        deliverer.out_msgs += len(datas)
        deliverer.out_bytes += sum(map(len, datas))
    if new:
        deadline = time.time() + sub.ack_wait
        if sub.channel.subs_store.tracks_pending:
            sub.channel.subs_store.add_seqs_pending(sub.id, new)
        pending.update(dict.fromkeys(new, deadline))
        if sub.timer is None:
            deliverer._arm(sub, sub.ack_wait)
    sub.last_sent = last_sent
    if stalled:
        sub.stalled = True
