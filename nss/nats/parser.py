"""The NATS protocol as a client receives it, parsed apart from any I/O.

Not a per-byte state machine as in nats.go or nats.py: in Python a loop over
bytes costs far more than C-level ``find`` and ``split`` over a whole socket
read, and a STAN server takes two NATS messages in per STAN message. So one
``feed`` per read parses every complete operation in it and calls a plain
synchronous callback for each; an operation cut by the end of the read is
kept and parsed again, from its first byte, once the rest has arrived (a
message whose size is known is not looked at again until all of it is in).

Like nats.go it trusts the sizes nats-server gives, and it knows a MSG by
its first byte (nothing else nats-server sends starts with ``M``): checking
more of every message costs a tenth of the parse. A stream that is not NATS
still fails at once, on the first line that does not parse, which the bytes
after a payload of the wrong size nearly always are.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from nss.nats.errors import ProtocolError

MsgHandler = Callable[[int, bytes, bytes, bytes], None]
HMsgHandler = Callable[[int, bytes, bytes, bytes, bytes], None]
# a subscription's own callback, called by the parser itself: (subject, reply, payload)
RawHandler = Callable[[bytes, bytes, bytes], None]

_CRLF = b"\r\n"
# A control line still without its CRLF after this many bytes is not NATS:
# the longest nats-server sends, an INFO listing a cluster, is far shorter.
MAX_CONTROL_LINE = 1024 * 1024
# How much of an unreadable line an error quotes.
_QUOTE = 64


def _ignore() -> None:
    pass


def _reraise(_subject: bytes, e: Exception) -> None:
    raise e


def _bad(buf: bytes, pos: int, end: int, why: str) -> ProtocolError:
    return ProtocolError(f"{why}: {buf[pos : min(end, pos + _QUOTE)]!r}")


def msg_args(buf: bytes, pos: int, i: int) -> tuple[int, bytes, bytes, int]:
    """sid, subject, reply and size from the line ``MSG <subject> <sid>
    [reply] <size>`` ending at ``i``. The compiled parser reads the usual
    form itself and calls this for anything else, so both take the same
    lines and fail on the same ones."""
    parts = buf[pos + 4 : i].split()
    k = len(parts)
    if k == 3:
        reply = b""
    elif k == 4:
        reply = parts[2]
    else:
        raise _bad(buf, pos, i, "malformed MSG")
    try:
        sid = int(parts[1])
        size = int(parts[-1])
    except ValueError:
        raise _bad(buf, pos, i, "malformed MSG") from None
    if size < 0:
        raise _bad(buf, pos, i, "malformed MSG")
    return sid, parts[0], reply, size


def hmsg_args(buf: bytes, pos: int, i: int) -> tuple[int, bytes, bytes, int, int]:
    """sid, subject, reply, header size and total size from the line
    ``HMSG <subject> <sid> [reply] <header size> <total size>`` ending at ``i``."""
    parts = buf[pos + 5 : i].split()
    k = len(parts)
    if k == 4:
        reply = b""
    elif k == 5:
        reply = parts[2]
    else:
        raise _bad(buf, pos, i, "malformed HMSG")
    try:
        sid = int(parts[1])
        hdr_size = int(parts[-2])
        size = int(parts[-1])
    except ValueError:
        raise _bad(buf, pos, i, "malformed HMSG") from None
    if hdr_size < 0 or size < hdr_size:
        raise _bad(buf, pos, i, "malformed HMSG")
    return sid, parts[0], reply, hdr_size, size


class Parser:
    """What a NATS server sends, from raw bytes to callbacks.

    ``on_msg(sid, subject, reply, payload)`` and ``on_hmsg(sid, subject,
    reply, header, payload)`` get ``reply`` as ``b""`` when the message has
    none, and ``header`` from its ``NATS/1.0`` status line to the blank line
    that ends it. ``on_info`` gets the INFO JSON object, ``on_err`` the text
    after ``-ERR``; ``on_ping``, ``on_pong`` and ``on_ok`` get nothing.

    A message whose sid is in ``handlers`` goes to that callback instead of
    ``on_msg``; if it raises, ``on_callback_error(subject, exception)`` is
    told and parsing goes on.

    A callback that raises stops the feed; what follows the operation it was
    called for is kept for the next one. ``ProtocolError`` means the stream
    is not NATS: nothing after it can be trusted, so the connection must go,
    and ``reset`` makes the parser ready for the next one.
    """

    __slots__ = (
        "_need",
        "_tail",
        "handlers",
        "on_callback_error",
        "on_err",
        "on_hmsg",
        "on_info",
        "on_msg",
        "on_ok",
        "on_ping",
        "on_pong",
    )

    def __init__(
        self,
        *,
        on_msg: MsgHandler,
        on_hmsg: HMsgHandler,
        on_ping: Callable[[], None],
        on_pong: Callable[[], None],
        on_info: Callable[[dict[str, Any]], None],
        on_err: Callable[[str], None],
        on_ok: Callable[[], None] = _ignore,
        on_callback_error: Callable[[bytes, Exception], None] | None = None,
    ) -> None:
        self.on_msg = on_msg
        self.on_hmsg = on_hmsg
        self.on_ping = on_ping
        self.on_pong = on_pong
        self.on_info = on_info
        self.on_err = on_err
        self.on_ok = on_ok
        self.on_callback_error = on_callback_error or _reraise
        # sid -> the subscription's own callback, called with (subject,
        # reply, payload) instead of ``on_msg``: one call less per message
        self.handlers: dict[int, RawHandler] = {}
        # bytes of an operation not complete yet, and how many it needs in all
        self._tail = bytearray()
        self._need = 0

    @property
    def pending(self) -> int:
        """Bytes received that wait for the rest of their operation."""
        return len(self._tail)

    def reset(self) -> None:
        """Forget a partial operation: the next bytes start a new stream."""
        self._tail.clear()
        self._need = 0

    def feed(self, data: bytes) -> None:
        """Parse ``data`` (whatever one read returned) after what was kept."""
        tail = self._tail
        if tail:
            tail += data
            if len(tail) < self._need:
                return  # a big payload still arriving: do not parse it again
            buf = bytes(tail)
            tail.clear()
        else:
            buf = data
        n = len(buf)
        pos = 0
        need = 0
        find = buf.find
        on_msg = self.on_msg
        handlers = self.handlers
        try:
            while pos < n:
                i = find(_CRLF, pos)
                if i < 0:
                    if n - pos > MAX_CONTROL_LINE:
                        raise _bad(buf, pos, n, "control line too long")
                    break
                c = buf[pos]
                if c == 77:  # MSG <subject> <sid> [reply] <size>
                    sid, subject, reply, size = msg_args(buf, pos, i)
                    start = i + 2
                    end = start + size
                    if end + 2 > n:
                        need = end + 2 - pos
                        break
                    pos = end + 2
                    h = handlers.get(sid)
                    if h is None:
                        on_msg(sid, subject, reply, buf[start:end])
                    else:
                        try:
                            h(subject, reply, buf[start:end])
                        except Exception as e:  # never let a callback break the parser
                            self.on_callback_error(subject, e)
                elif c == 72 and buf.startswith(b"HMSG ", pos):  # rare: can afford a check
                    sid, subject, reply, hdr_size, size = hmsg_args(buf, pos, i)
                    start = i + 2
                    end = start + size
                    if end + 2 > n:
                        need = end + 2 - pos
                        break
                    pos = end + 2
                    hdr_end = start + hdr_size
                    self.on_hmsg(sid, subject, reply, buf[start:hdr_end], buf[hdr_end:end])
                else:
                    line = buf[pos:i]
                    pos = i + 2
                    control(self, line)
        finally:
            if pos < n:
                tail += memoryview(buf)[pos:]
            self._need = need


def control(p: Any, line: bytes) -> None:
    """A line that is all of its operation (no payload follows); ``p`` is
    either parser, whose callbacks it calls."""
    if line.startswith(b"PING"):
        p.on_ping()
    elif line.startswith(b"PONG"):
        p.on_pong()
    elif line.startswith(b"INFO"):
        try:
            info = json.loads(line[4:])
        except ValueError:
            info = None
        if not isinstance(info, dict):
            raise _bad(line, 0, len(line), "malformed INFO")
        p.on_info(info)
    elif line.startswith(b"-ERR"):
        p.on_err(line[4:].decode(errors="replace").strip())
    elif line.startswith(b"+OK"):
        p.on_ok()
    else:
        raise _bad(line, 0, len(line), "unknown operation")
