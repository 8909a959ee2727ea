"""The per-message work of the server, compiled where it could be built.

``_compiled`` (Cython, built by ``pip install`` when a C compiler is there)
and ``pure`` (Python) offer the same functions with the same results; this
picks the first unless it is missing or ``NSS_PURE=1`` is set. ``COMPILED``
says which one runs (the start-up log shows it)."""

from __future__ import annotations

import os
from types import ModuleType

from nss.hot import pure


def _pick() -> ModuleType:
    if os.environ.get("NSS_PURE", "") not in ("", "0"):
        return pure
    try:
        from nss.hot import _compiled  # type: ignore[attr-defined]
    except ImportError:
        return pure
    return _compiled


impl = _pick()
COMPILED = impl is not pure

AckHandler = impl.AckHandler
AckNoter = impl.AckNoter
DirectBatch = impl.DirectBatch
Parser = impl.Parser
PublishFastPath = impl.PublishFastPath
append_msg_record = impl.append_msg_record
append_msg_records = impl.append_msg_records
append_pub = impl.append_pub
append_pubacks = impl.append_pubacks
append_pubs = impl.append_pubs
append_sub_ops = impl.append_sub_ops
crc32 = impl.crc32
decode_ack = impl.decode_ack
decode_pubmsg = impl.decode_pubmsg
encode_msgproto = impl.encode_msgproto
encode_puback = impl.encode_puback
send_span = impl.send_span
sub_record = impl.sub_record

__all__ = ["COMPILED", "impl", *pure.__all__]
