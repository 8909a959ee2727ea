"""Would the Go server's (gogo-protobuf) decoder accept this payload?

The Python decoder is lenient where gogo's generated ``Unmarshal`` is not: a
known field arriving with the wrong wire type is kept as an unknown field
instead of failing the decode. The protocol depends on decode failures in one
place: a payload on the publish subject that is not a PubMsg but decodes as
a (legacy) CtrlMsg is silently ignored (protocol.md §6). This walker tells
the two cases apart the way Go does. It runs on error paths only.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError

_LEN = 2
_FD = FieldDescriptor
_FIXED64 = {_FD.TYPE_DOUBLE, _FD.TYPE_FIXED64, _FD.TYPE_SFIXED64}
_FIXED32 = {_FD.TYPE_FLOAT, _FD.TYPE_FIXED32, _FD.TYPE_SFIXED32}
_LENGTH = {_FD.TYPE_STRING, _FD.TYPE_BYTES, _FD.TYPE_MESSAGE}

_cache: dict[str, dict[int, frozenset[int]]] = {}


def _wire_types(desc: Descriptor) -> dict[int, frozenset[int]]:
    wt = _cache.get(desc.full_name)
    if wt is None:
        wt = {}
        for f in desc.fields:
            if f.type in _LENGTH:
                ok = {_LEN}
            elif f.type in _FIXED64:
                ok = {1}
            elif f.type in _FIXED32:
                ok = {5}
            else:
                ok = {0}
            if f.is_repeated and f.type not in _LENGTH:
                ok.add(_LEN)  # packed or not, both are accepted
            wt[f.number] = frozenset(ok)
        _cache[desc.full_name] = wt
    return wt


def decode_varint(data: bytes, i: int) -> tuple[int, int]:
    """The varint at ``i`` and the offset after it; ValueError when it is
    cut or longer than 64 bits."""
    shift = 0
    v = 0
    n = len(data)
    while True:
        if shift >= 64:
            raise ValueError("int overflow")
        if i >= n:
            raise ValueError("unexpected EOF")
        b = data[i]
        i += 1
        v |= (b & 0x7F) << shift
        if b < 0x80:
            return v, i
        shift += 7


def _skip(data: bytes, i: int, wire: int) -> int:
    """Skip one value (or a whole group) of wire type ``wire`` at ``i``."""
    depth = 0
    while True:
        if wire == 0:
            _, i = decode_varint(data, i)
        elif wire == 1:
            i += 8
        elif wire == _LEN:
            ln, i = decode_varint(data, i)
            if ln > len(data) - i:
                raise ValueError("invalid length")
            i += ln
        elif wire == 3:
            depth += 1
        elif wire == 4:
            if depth == 0:
                raise ValueError("unexpected end of group")
            depth -= 1
        elif wire == 5:
            i += 4
        else:
            raise ValueError("illegal wire type")
        if i > len(data):
            raise ValueError("unexpected EOF")
        if depth == 0:
            return i
        key, i = decode_varint(data, i)
        wire = key & 7


def go_decodes(data: bytes, desc: Descriptor) -> bool:
    """True if Go's generated Unmarshal for ``desc`` would succeed on ``data``.

    Strings are not checked for UTF-8 (gogo does not check them either);
    nested messages are not descended into."""
    wt = _wire_types(desc)
    i = 0
    n = len(data)
    try:
        while i < n:
            key, i = decode_varint(data, i)
            num, wire = key >> 3, key & 7
            if wire == 4 or num <= 0:
                return False
            ok = wt.get(num)
            if ok is not None and wire not in ok:
                return False
            i = _skip(data, i, wire)
    except ValueError:
        return False
    return True


def encode_varint(n: int) -> bytes:
    """A protobuf base-128 varint (non-negative ``n``)."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def go_decode(cls: Any, payload: bytes) -> Any:
    """Decode a request, failing (DecodeError) wherever Go's decoder fails:
    upb accepts a known field with the wrong wire type, gogo-protobuf does
    not, and the protocol answers decode failures with their own errors."""
    msg = cls.FromString(payload)
    if payload and not go_decodes(payload, cls.DESCRIPTOR):
        raise DecodeError(f"wrong wire type in {cls.DESCRIPTOR.name}")
    return msg
