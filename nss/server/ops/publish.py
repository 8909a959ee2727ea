"""Publish: decode and check a PubMsg in the NATS callback, then queue it
on the I/O path, where the publish batch stores, delivers and acks it."""

from __future__ import annotations

import asyncio
from typing import Any

from nss.hot import decode_pubmsg, encode_puback, pure
from nss.pb import protocol_pb2 as pb
from nss.pb import spb_pb2 as spb
from nss.pb.wire import go_decodes
from nss.server.context import ServerContext
from nss.server.ops.errors import ERR_INVALID_PUB_REQ
from nss.subjects import valid_channel

_PUBMSG_DESC = pb.PubMsg.DESCRIPTOR
_CTRLMSG_DESC = spb.CtrlMsg.DESCRIPTOR
# channel names seen valid, so that a publish checks its name once per name;
# bounded against a client publishing to ever new names
_VALID_NAMES_MAX = 65536

# (clientID, guid, subject, reply, data, connID) of a decoded PubMsg
PubFields = tuple[str, str, str, str, bytes, bytes]


class _Stats:
    in_msgs = 0
    in_bytes = 0


class PublishHandler:
    """The callback of the publish subject(s). Errors are answered at once
    (an error PubAck); valid publishes go to the I/O path in arrival order."""

    # subscribed with ``subscribe_raw``: subject and reply come as bytes
    raw = True

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        # partitioning: publishes of clients whose connect is still queued
        self._waiting: dict[bytes | str, list[tuple[PubFields, str]]] = {}
        self.valid: set[str] = set()
        # where publishes are counted (the fast path, which counts its own)
        self.stats: Any = _Stats()

    def __call__(self, subject: bytes, reply: bytes, payload: bytes) -> None:
        """A raw NATS callback (subject and reply as read): called for every
        message published, so the usual case takes the compiled decoder and
        no detour; anything it does not take is decoded the long way."""
        pm = decode_pubmsg(payload)
        if pm is None:
            pm = pure.decode_pubmsg(payload)
            if pm is None:
                self._undecodable(subject.decode(errors="replace"), reply.decode(), payload, "")
                return
        ctx = self.ctx
        client_id, guid, channel, _r, _d, conn_id = pm
        clients = ctx.clients
        client = clients.by_conn.get(conn_id) if conn_id else clients.by_id.get(client_id)
        valid = channel in self.valid or self._check_name(channel)
        rep = reply.decode() if reply else ""
        if guid and valid:
            if client is not None:
                self._count(len(payload))
                ctx.io.publish(pm, rep)
                return
            if ctx.partition is not None:
                self._count(len(payload))
                self._when_known(pm, rep)
                return
        if not go_decodes(payload, _PUBMSG_DESC):
            # the Go decoder rejects what upb let through (wrong wire type)
            self._undecodable(subject.decode(errors="replace"), rep, payload, guid)
            return
        self._count(len(payload))
        if rep:
            ctx.conn.publish(rep, encode_puback(guid, ERR_INVALID_PUB_REQ))

    def _count(self, size: int) -> None:
        stats = self.stats
        stats.in_msgs += 1
        stats.in_bytes += size

    def _check_name(self, name: str) -> bool:
        if not valid_channel(name):
            return False
        if len(self.valid) >= _VALID_NAMES_MAX:
            self.valid.clear()
        self.valid.add(name)
        return True

    def _when_known(self, pm: PubFields, reply: str) -> None:
        """Partitioning: the connect went to every partition and ours may still
        be queued; hold the client's publishes (in order) up to 1 s for it."""
        client_id, conn_id = pm[0], pm[5]
        key: bytes | str = conn_id or client_id
        waiting = self._waiting.get(key)
        if waiting is not None:
            waiting.append((pm, reply))
            return
        self._waiting[key] = [(pm, reply)]
        ctx = self.ctx

        async def wait() -> None:
            known = await ctx.wait_client(client_id, conn_id)
            for m, r in self._waiting.pop(key, []):
                if known:
                    ctx.io.publish(m, r)
                elif r:
                    ctx.conn.publish(r, encode_puback(m[1], ERR_INVALID_PUB_REQ))

        asyncio.get_running_loop().create_task(wait())

    def _undecodable(self, subject: str, reply: str, payload: bytes, guid: str) -> None:
        if go_decodes(payload, _CTRLMSG_DESC):
            return  # a legacy CtrlMsg: silently ignored (protocol.md §6)
        self.ctx.log.error(f"Unable to decode publish message on {subject}")
        if reply:
            self.ctx.conn.publish(reply, encode_puback(guid, ERR_INVALID_PUB_REQ))
