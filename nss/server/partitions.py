"""Channel partitioning: which channels this server serves, and the check on
``_STAN.part.<cid>`` that no other server of the cluster serves one of them.

Only the conflict check talks to other servers; everything else is this
server deciding to stay silent about channels outside its list, so that the
server that owns them answers (partitioning.md).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

from google.protobuf.message import DecodeError

from nss.nats.connection import NatsConnection
from nss.nuid import new_inbox
from nss.pb import spb_pb2 as spb
from nss.subjects import Sublist

ERR_NO_CHANNEL = "stan: no configured channel"
# Replies are awaited until this long passes without one (§3).
REPLY_QUIET = 1.0
# After the NATS cluster grows, let the newcomer's subscriptions propagate.
TOPOLOGY_DELAY = 0.5
# Conservative CtrlMsg framing estimate when splitting the list.
_HEADER_ESTIMATE = 64


class PartitionError(Exception):
    pass


def encode_channels(names: list[str]) -> bytes:
    """2-byte little-endian length + name, for each channel."""
    out = bytearray()
    for n in names:
        b = n.encode()
        out += struct.pack("<H", len(b))
        out += b
    return bytes(out)


def decode_channels(data: bytes) -> list[str]:
    names = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise ValueError("truncated channel length")
        (n,) = struct.unpack_from("<H", data, pos)
        pos += 2
        if pos + n > len(data):
            raise ValueError("truncated channel name")
        names.append(data[pos : pos + n].decode())
        pos += n
    return names


def split_channels(names: list[str], max_payload: int) -> list[list[str]]:
    """Group names so each group's CtrlMsg fits in one NATS message."""
    room = max_payload - _HEADER_ESTIMATE
    groups: list[list[str]] = []
    cur: list[str] = []
    size = 0
    for n in names:
        need = 2 + len(n.encode())
        if need > room:
            raise PartitionError("message payload too small to send channels list")
        if size + need > room:
            groups.append(cur)
            cur, size = [], 0
        cur.append(n)
        size += need
    if cur:
        groups.append(cur)
    return groups


class Partition:
    """This server's channel list and its matching trie."""

    def __init__(self, names: list[str]) -> None:
        if not names:
            raise PartitionError(ERR_NO_CHANNEL)
        self.names = list(names)
        self._trie: Sublist[str] = Sublist()
        for n in self.names:
            self._trie.insert(n, n)
        self._cache: dict[str, bool] = {}

    def owns(self, channel: str) -> bool:
        hit = self._cache.get(channel)
        if hit is None:
            hit = bool(self._trie.match(channel))
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[channel] = hit
        return hit

    def conflict_with(self, received: list[str]) -> str:
        """The first channel in conflict with a peer's list ('' if none)."""
        for n in received:
            if self._trie.match(n):
                return n
        theirs: Sublist[str] = Sublist()
        for n in received:
            theirs.insert(n, n)
        for n in self.names:
            if theirs.match(n):
                return n
        return ""


class PartitionExchange:
    """Sends our list to the other servers and answers theirs."""

    def __init__(
        self,
        conn: NatsConnection,
        cluster_id: str,
        server_id: str,
        partition: Partition,
        log: Callable[[str], None],
    ) -> None:
        self.conn = conn
        self.subject = f"_STAN.part.{cluster_id}"
        self.server_id = server_id
        self.partition = partition
        self._log = log
        self._sid = 0

    def start(self) -> None:
        self._sid = self.conn.subscribe(self.subject, self._on_request)

    def stop(self) -> None:
        if self._sid:
            self.conn.unsubscribe(self._sid)
            self._sid = 0

    def _on_request(self, _subject: str, reply: str, payload: bytes) -> None:
        if not payload or not reply:
            return
        try:
            msg = spb.CtrlMsg.FromString(payload)
        except DecodeError:
            self._log("Unable to decode partitioning request")
            return
        if msg.ServerID == self.server_id:
            return
        try:
            names = decode_channels(msg.Data)
        except (ValueError, UnicodeDecodeError) as e:
            self._log(f"Invalid channels list from server {msg.ServerID}: {e}")
            return
        conflict = self.partition.conflict_with(names)
        resp = spb.CtrlMsg(
            MsgType=spb.CtrlMsg.Partitioning,
            ServerID=self.server_id,
            Data=conflict.encode(),
        )
        self.conn.publish(reply, resp.SerializeToString())

    async def check(self) -> None:
        """Raise PartitionError if another server serves one of our channels."""
        inbox = new_inbox()
        replies: asyncio.Queue[bytes] = asyncio.Queue()
        sid = self.conn.subscribe(inbox, lambda _s, _r, p: replies.put_nowait(p))
        try:
            for group in split_channels(self.partition.names, self.conn.max_payload):
                req = spb.CtrlMsg(
                    MsgType=spb.CtrlMsg.Partitioning,
                    ServerID=self.server_id,
                    Data=encode_channels(group),
                )
                self.conn.publish(self.subject, req.SerializeToString(), inbox)
            await self.conn.flush()
            while True:
                try:
                    data = await asyncio.wait_for(replies.get(), REPLY_QUIET)
                except TimeoutError:
                    return
                try:
                    resp = spb.CtrlMsg.FromString(data)
                except DecodeError as e:
                    raise PartitionError(f"unable to decode partitioning response: {e}") from e
                if resp.Data:
                    raise PartitionError(
                        f'channel "{resp.Data.decode(errors="replace")}" causes conflict '
                        f'with channels on server "{resp.ServerID}"'
                    )
        finally:
            self.conn.unsubscribe(sid)
