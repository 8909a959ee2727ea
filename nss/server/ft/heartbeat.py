"""The FT heartbeat on the wire (ft.md §6.1).

The Go server's ``CtrlMsg{FTHeartbeat, ServerID, Data}`` with Data in Go's
``time.Time.MarshalBinary`` format, so nss and Go servers can share a group
(a rolling migration). Pure encoding: no NATS here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from nss.pb import spb_pb2 as spb

# seconds between 0001-01-01 and 1970-01-01, as Go's time encoding counts
_GO_EPOCH_OFFSET = 62135596800


def go_time_marshal(ns: int) -> bytes:
    """Go ``time.Time.MarshalBinary`` of a Unix time in ns, UTC location."""
    secs, nsec = divmod(ns, 1_000_000_000)
    return struct.pack(">BqiH", 1, secs + _GO_EPOCH_OFFSET, nsec, 0xFFFF)


def go_time_unmarshal(data: bytes) -> int:
    """Unix ns from Go's binary time (versions 1 and 2); ValueError if bad."""
    if not data or data[0] not in (1, 2):
        raise ValueError("Time.UnmarshalBinary: unsupported version")
    want = 15 if data[0] == 1 else 16
    if len(data) != want:
        raise ValueError("Time.UnmarshalBinary: invalid length")
    _, secs, nsec, _ = struct.unpack(">BqiH", data[:15])
    return (secs - _GO_EPOCH_OFFSET) * 1_000_000_000 + nsec


def encode_heartbeat(server_id: str, activation_ns: int) -> bytes:
    return spb.CtrlMsg(
        MsgType=spb.CtrlMsg.FTHeartbeat,
        ServerID=server_id,
        Data=go_time_marshal(activation_ns),
    ).SerializeToString()


@dataclass(frozen=True)
class Heartbeat:
    """A heartbeat as heard: ``data`` stays raw because a bad activation
    time is logged by the receiver, not treated as noise."""

    server_id: str
    data: bytes


def decode_heartbeat(payload: bytes) -> Heartbeat | None:
    """The heartbeat in ``payload``; None for anything else on the subject
    (undecodable or another control message), which an active ignores."""
    try:
        msg = spb.CtrlMsg.FromString(payload)
    except DecodeError:
        return None
    if msg.MsgType != spb.CtrlMsg.FTHeartbeat:
        return None
    return Heartbeat(msg.ServerID, msg.Data)
