"""The narrow context the protocol handlers work in.

A handler sees the registries, the store, the I/O path, the deliverer,
channel expiry, the options and the log, and reaches NATS only through the
small ``Transport`` interface, so that tests drive the handlers with a fake
transport and a MEMORY store: request bytes in, response protos out. The
server builds one context per serving period (start-up or FT activation).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from nss.hot import AckHandler, DirectBatch, pure
from nss.nats.parser import RawHandler
from nss.options import StreamingOptions
from nss.pb import spb_pb2 as spb
from nss.server.batch import PublishBatch
from nss.server.core.channels import ChannelRegistry
from nss.server.core.clients import ClientRegistry
from nss.server.core.expiry import ChannelExpiry
from nss.server.core.model import Channel, Client, Subscription
from nss.server.core.subscriptions import Removal, take_offline
from nss.server.delivery import Deliverer
from nss.server.io import IOPath
from nss.server.partitions import Partition
from nss.stores.base import Store, StoreError

# Partitioning: how long a publish or subscribe waits for its client's connect.
PARTITION_CLIENT_WAIT = 1.0

Handler = Callable[[str, str, bytes], None]


class Transport(Protocol):
    """The server's NATS connection, as the handlers use it."""

    def publish(self, subject: str, payload: bytes) -> None: ...

    def subscribe(self, subject: str, cb: Handler) -> int: ...

    def subscribe_raw(self, subject: str, cb: RawHandler) -> int: ...

    def unsubscribe(self, sid: int) -> None: ...

    def request(self, subject: str, payload: bytes, timeout: float) -> Awaitable[bytes]: ...


class Heartbeats(Protocol):
    def arm(self, client: Client, delay: float) -> None: ...


class ServerContext:
    def __init__(
        self,
        opts: StreamingOptions,
        conn: Transport,
        store: Store,
        info: spb.ServerInfo,
        clients: ClientRegistry,
        channels: ChannelRegistry,
        log: Any,
        *,
        max_payload: int = 1024 * 1024,
        partition: Partition | None = None,
    ) -> None:
        self.opts = opts
        self.conn = conn
        self.store = store
        self.info = info
        self.clients = clients
        self.channels = channels
        self.log = log
        self.partition = partition
        loop = asyncio.get_running_loop()
        self.deliverer = Deliverer(
            conn.publish,
            self._schedule_redelivery,
            loop,
            publish_many=getattr(conn, "publish_many", None),
        )
        batch = PublishBatch(
            self.channel_for_publish,
            self.deliverer,
            conn.publish,
            self._after_publish,
            max_payload,
            log,
        )
        batch.send_pubacks = getattr(conn, "publish_pubacks", None)
        self.io = IOPath(
            batch, opts.io_batch_size, opts.io_sleep_time, log, getattr(conn, "flush_now", None)
        )
        # the raw publish and ack callbacks' way into the I/O path
        self.direct = DirectBatch(self.io)
        store.on_availability = self._store_availability
        self.deliverer.deliver_later = self.io.deliver_later
        self.expiry = ChannelExpiry(channels, store, self.io, log)
        # set by the server once the heartbeat timers exist (ops.heartbeat)
        self.heartbeats: Heartbeats | None = None
        # shutdown has begun: no new timer, no more waiting
        self.closed = False
        # counts the messages published (nss.hot.PublishFastPath)
        self.publish_stats: Any = None

    def _store_availability(self, ok: bool) -> None:
        """The store stopped (or resumed) taking writes: publishes are
        refused at once meanwhile (``IOPath.refusal``)."""
        self.io.refusal = None if ok else self._store_refusal

    def _store_refusal(self) -> str:
        try:
            self.store.check_writable()
        except StoreError as e:
            return str(e)
        return ""

    @property
    def in_msgs(self) -> int:
        return self.publish_stats.in_msgs if self.publish_stats is not None else 0

    @property
    def in_bytes(self) -> int:
        return self.publish_stats.in_bytes if self.publish_stats is not None else 0

    def respond(self, reply: str, msg: Any) -> None:
        if reply:
            self.conn.publish(reply, msg.SerializeToString())

    # ------------------------------------------------------------ channels
    def channel(self, name: str) -> Channel:
        """The channel, created (and its inactivity timer armed) if new.
        Raises StoreError (limits) or ValueError (client-facing text)."""
        ch, created = self.channels.lookup_or_create(name)
        if created:
            self.log.debug(f'Channel "{name}" has been created')
            self.expiry.arm_inactivity(ch)
        return ch

    def channel_for_publish(self, name: str) -> Channel:
        ch = self.channels.channels.get(name)
        if ch is None or ch.deleting:
            return self.channel(name)
        return ch

    def _after_publish(self, ch: Channel) -> None:
        self.expiry.after_publish(ch)

    def _schedule_redelivery(self, sub: Subscription) -> None:
        self.io.call(self.deliverer.redeliver, sub)

    # ------------------------------------------------------------ subscriptions
    def listen_acks(self, sub: Subscription) -> None:
        """Listen on the subscription's ack inbox (the server's own subject)."""
        handler = AckHandler(sub, sub.channel.name, self.direct.ack, self._other_ack)
        sub.ack_sid = self.conn.subscribe_raw(sub.ack_inbox, handler)

    def _other_ack(self, sub: Subscription, payload: bytes) -> None:
        """What the ack handler's fast decoder did not take: the protobuf
        library's judgement (an Ack of another channel is dropped)."""
        ack = pure.decode_ack(payload)
        if ack is None:
            self.log.error(f"Unable to decode ack on {sub.ack_inbox}")
        elif ack[0] == sub.channel.name:
            self.io.ack(sub, ack[1])

    def take_offline(self, sub: Subscription, unsubscribe: bool) -> None:
        """Take a subscription off line and do what that leaves to do: stop
        listening on its ack inbox, hand its unacknowledged messages to the
        rest of its queue group, start the channel's inactivity timer."""
        self.finish_removal(sub, take_offline(sub, unsubscribe))

    def finish_removal(self, sub: Subscription, r: Removal) -> None:
        if r.ack_sid:
            self.conn.unsubscribe(r.ack_sid)
        if r.heir is not None:
            self.deliverer.transfer_pending(sub, r.heir)
            self.io.deliver_later(r.heir)
        if r.channel_idle:
            self.expiry.arm_inactivity(sub.channel)

    # ------------------------------------------------------------ clients
    def client_of(self, client_id: str, conn_id: bytes) -> Client | None:
        if conn_id:
            return self.clients.by_conn.get(conn_id)
        return self.clients.by_id.get(client_id)

    async def wait_client(self, client_id: str, conn_id: bytes = b"") -> bool:
        """Partitioning: the connect went to every partition and ours may
        still be queued; wait up to 1 s for the client to be known."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PARTITION_CLIENT_WAIT
        while self.client_of(client_id, conn_id) is None:
            if loop.time() >= deadline or self.closed:
                return False
            await asyncio.sleep(0.01)
        return True
