"""Publish: decode and check a PubMsg in the NATS callback, then queue it
on the I/O path, where the publish batch stores, delivers and acks it."""

from __future__ import annotations

import asyncio

from google.protobuf.message import DecodeError

from nss.pb import protocol_pb2 as pb
from nss.pb import spb_pb2 as spb
from nss.pb.wire import go_decodes
from nss.server.batch import encode_puback
from nss.server.context import ServerContext
from nss.server.ops.errors import ERR_INVALID_PUB_REQ
from nss.stores.base import StoreError
from nss.subjects import valid_channel

_PUBMSG_DESC = pb.PubMsg.DESCRIPTOR
_CTRLMSG_DESC = spb.CtrlMsg.DESCRIPTOR


class PublishHandler:
    """The callback of the publish subject(s). Errors are answered at once
    (an error PubAck); valid publishes go to the I/O path in arrival order."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        # partitioning: publishes of clients whose connect is still queued
        self._waiting: dict[bytes | str, list[tuple[pb.PubMsg, str]]] = {}

    def __call__(self, subject: str, reply: str, payload: bytes) -> None:
        ctx = self.ctx
        try:
            pm = pb.PubMsg.FromString(payload)
        except DecodeError:
            self._undecodable(subject, reply, payload, "")
            return
        clients = ctx.clients
        if pm.connID:
            client = clients.by_conn.get(pm.connID)
        else:
            client = clients.by_id.get(pm.clientID)
        if client is None and ctx.partition is not None and pm.guid and valid_channel(pm.subject):
            ctx.in_msgs += 1
            ctx.in_bytes += len(payload)
            self._when_known(pm, reply)
            return
        if client is None or not pm.guid or not valid_channel(pm.subject):
            if not go_decodes(payload, _PUBMSG_DESC):
                # the Go decoder rejects what upb let through (wrong wire type)
                self._undecodable(subject, reply, payload, pm.guid)
                return
            ctx.in_msgs += 1
            ctx.in_bytes += len(payload)
            if reply:
                ctx.conn.publish(reply, encode_puback(pm.guid, ERR_INVALID_PUB_REQ))
            return
        ctx.in_msgs += 1
        ctx.in_bytes += len(payload)
        try:
            # refused now rather than queued behind a commit the database
            # holds (the I/O path runs one batch at a time)
            ctx.store.check_writable()
        except StoreError as e:
            if reply:
                ctx.conn.publish(reply, encode_puback(pm.guid, str(e)))
            return
        ctx.io.publish(pm, reply)

    def _when_known(self, pm: pb.PubMsg, reply: str) -> None:
        """Partitioning: the connect went to every partition and ours may still
        be queued; hold the client's publishes (in order) up to 1 s for it."""
        key: bytes | str = pm.connID or pm.clientID
        waiting = self._waiting.get(key)
        if waiting is not None:
            waiting.append((pm, reply))
            return
        self._waiting[key] = [(pm, reply)]
        ctx = self.ctx

        async def wait() -> None:
            known = await ctx.wait_client(pm.clientID, pm.connID)
            for m, r in self._waiting.pop(key, []):
                if known:
                    ctx.io.publish(m, r)
                elif r:
                    ctx.conn.publish(r, encode_puback(m.guid, ERR_INVALID_PUB_REQ))

        asyncio.get_running_loop().create_task(wait())

    def _undecodable(self, subject: str, reply: str, payload: bytes, guid: str) -> None:
        if go_decodes(payload, _CTRLMSG_DESC):
            return  # a legacy CtrlMsg: silently ignored (protocol.md §6)
        self.ctx.log.error(f"Unable to decode publish message on {subject}")
        if reply:
            self.ctx.conn.publish(reply, encode_puback(guid, ERR_INVALID_PUB_REQ))
