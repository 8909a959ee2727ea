"""StanServer: wires the NATS connection, the store and the protocol
handlers together, and sequences start, serve and shutdown.

What each request does lives in ``ops/`` (one module per operation, over the
narrow ``ServerContext``), the domain in ``core/``, the per-message work in
``batch.py``, fault tolerance in ``ft``, the start-up steps in ``startup.py``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TYPE_CHECKING, Any

from nss import __version__, hot
from nss.log import get_logger
from nss.nats.connection import NatsConnection, NatsError
from nss.nuid import next_nuid
from nss.options import VERSION, Options
from nss.pb import spb_pb2 as spb
from nss.sdnotify import Notifier
from nss.server import startup
from nss.server.context import ServerContext
from nss.server.core.channels import ChannelRegistry
from nss.server.core.clients import ClientRegistry
from nss.server.delivery import Deliverer
from nss.server.io import IOPath
from nss.server.ops import protocol_table
from nss.server.ops.heartbeat import ClientHeartbeats
from nss.server.partitions import Partition, PartitionExchange
from nss.server.startup import StartupError
from nss.server.state import ServerState
from nss.stores.base import Store, StoreError

if TYPE_CHECKING:
    from nss.server.ft.loop import FTLoop
    from nss.server.monitor.http import MonitorHTTP

__all__ = ["StanServer", "StartupError"]


class StanServer:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.sopts = opts.streaming
        self.log = get_logger()
        self.server_id = next_nuid()
        self.start_time = time.time()
        self.state = ServerState.STANDALONE
        self.natsd: Any = None
        self.conn: NatsConnection = None  # type: ignore[assignment]
        self.store: Store = None  # type: ignore[assignment]
        self.info = spb.ServerInfo()
        self.clients = ClientRegistry()
        self.channels: ChannelRegistry = None  # type: ignore[assignment]
        # the serving period's context: set once recovered and serving
        self.ctx: ServerContext | None = None
        self.max_payload = 1024 * 1024
        self._sids: list[int] = []
        self._shutdown = False
        # Set from the SIGINT/SIGTERM handler the moment the signal arrives
        # (app.py): requests arriving after it get no answer, as from the Go
        # server that is already closing its connections.
        self.stopping = False
        self.fatal: asyncio.Future[str] | None = None
        self.nats_url = ""
        self.monitor: MonitorHTTP | None = None
        self.ft: FTLoop | None = None
        self.ft_takeovers = 0
        # set when the store may no longer be written (lock lost): shutdown
        # then leaves the store and queued requests alone
        self.fenced = False
        self.notifier = Notifier()
        self.partition: Partition | None = None
        self.exchange: PartitionExchange | None = None

    # what monitoring reads of the serving period
    @property
    def deliverer(self) -> Deliverer | None:
        return self.ctx.deliverer if self.ctx is not None else None

    @property
    def io(self) -> IOPath | None:
        return self.ctx.io if self.ctx is not None else None

    @property
    def in_msgs(self) -> int:
        return self.ctx.in_msgs if self.ctx is not None else 0

    @property
    def in_bytes(self) -> int:
        return self.ctx.in_bytes if self.ctx is not None else 0

    # ================================================================ lifecycle
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.fatal = loop.create_future()
        s = self.sopts
        self.log.info(
            f"Starting nats-streaming-server[{s.cluster_id}] version {VERSION} (nss {__version__})"
        )
        self.log.info(f"ServerID: {self.server_id}")
        self.log.info(f"Python version: {sys.version.split()[0]}")
        path = "compiled" if hot.COMPILED else "pure Python (not compiled, or NSS_PURE=1)"
        self.log.info(f"Hot path: {path}")
        # -m/-ms: bound before NATS starts, as Go's monitor listener is
        n = self.opts.nats
        if n.http_port or n.https_port:
            # imported only then: the endpoints and HTTP are 1 MB resident
            from nss.server.monitor.http import MonitorHTTP

            self.monitor = MonitorHTTP.bind(self)
        if not s.nats_server_url:
            await self._start_embedded_nats()
        else:
            self.nats_url = s.nats_server_url
        if self.monitor is not None:
            await self.monitor.start()
        self.notifier.start_watchdog()
        self.conn = await startup.connect_nats(self.opts, self.nats_url, self.log)
        self.max_payload = self.conn.max_payload
        try:
            self.store = startup.create_store(s)
        except StoreError as e:
            raise StartupError(str(e)) from e
        self.channels = ChannelRegistry(self.store)
        if s.ft_group:
            self._start_standby()
            return
        if self.store.name == "FILE":
            await self._lock_standalone_datastore()
        await self._serve()

    async def _lock_standalone_datastore(self) -> None:
        """Refuse a FILE datastore another server is using.

        The Go server takes the store lock only in FT mode, so two standalone
        servers (or a standalone one beside an FT group) could both write one
        directory. nss takes the same POSIX lock standalone too: a second
        server is refused with an explanation, and an FT server started on
        the directory stands by instead of writing beside it."""
        lock = self.store.lock()
        if lock is not None and not await asyncio.to_thread(lock.acquire):
            raise StartupError(
                f'datastore "{self.sopts.file_path}" is in use by another server '
                "(its lock file .rootdir.lck is held); two servers may share a FILE "
                "store only as members of one fault-tolerance group (--ft_group)"
            )

    async def _serve(self) -> None:
        """Recover the store and start answering clients: at start-up, or
        when an FT standby takes over."""
        s = self.sopts
        self.info = await startup.open_store(self.store, s, self.clients, self.channels, self.log)
        if s.partitioning:
            await self._start_partitioning()
        ctx = ServerContext(
            s,
            self.conn,
            self.store,
            self.info,
            self.clients,
            self.channels,
            self.log,
            max_payload=self.max_payload,
            partition=self.partition,
        )
        heartbeats = ClientHeartbeats(ctx)
        ctx.heartbeats = heartbeats
        self.ctx = ctx
        if not s.partitioning and not s.ft_group:
            await startup.self_check(self.conn, self.info)
        table = protocol_table(ctx, heartbeats, lambda: self.stopping)
        self._sids = [
            self.conn.subscribe_raw(subject, cb)  # type: ignore[arg-type]
            if getattr(cb, "raw", False)
            else self.conn.subscribe(subject, cb)
            for subject, cb in table
        ]
        self._resume_recovered(ctx, heartbeats)
        ctx.io.start()
        await self.conn.flush()
        startup.log_limits(s, self.log)
        if self.monitor is not None:
            self.monitor.set_ready()
        self.log.info("Streaming Server is ready")
        self.notifier.ready(f"{self.state}: serving cluster {self.sopts.cluster_id}")

    def _resume_recovered(self, ctx: ServerContext, heartbeats: ClientHeartbeats) -> None:
        """Start serving what was recovered: ack inboxes, heartbeats,
        redelivery of unacked messages, then normal delivery."""
        for client in self.clients.by_id.values():
            heartbeats.arm(client, self.sopts.hb_interval)
        for ch in self.channels.channels.values():
            online = list(ch.plain)
            for g in ch.queues.values():
                online.extend(g.members)
            for sub in online:
                ctx.listen_acks(sub)
                sub.initialized = True
                if sub.pending:
                    ctx.deliverer.redeliver(sub)
                ctx.io.deliver_later(sub.group if sub.group is not None else sub)
            if ch.msgs.limits.max_age > 0:
                ctx.expiry.expire_messages(ch)
            if not ch.has_active_subs():
                ctx.expiry.arm_inactivity(ch)

    # ================================================================ FT
    def _start_standby(self) -> None:
        from nss.server.ft.loop import FTLoop
        from nss.server.ft.machine import jitter

        s = self.sopts
        lock = self.store.lock()
        if lock is None:  # the options check refuses this before anything starts
            raise StartupError("ft: only FILE or SQL stores supported in FT mode")
        self.ft = ft = FTLoop(
            self.conn,
            s.cluster_id,
            s.ft_group,
            self.server_id,
            hb_interval=jitter(s.ft_hb_interval),
            missed_interval=jitter(s.ft_hb_missed_interval),
            lock_decides=lock.names_one_owner,
            try_lock=lambda: asyncio.to_thread(lock.acquire),
            check_lock=lambda: asyncio.to_thread(lock.check),
            activate=self._ft_activate,
            fatal=self._ft_fatal,
            on_state=self._set_state,
            log=self.log,
        )
        # a store that finds itself deposed while writing stops us at once
        lock.on_lost = lambda: ft.notice_lock_lost(lock.lost_reason)
        if self.monitor is not None:
            self.monitor.set_ready()
        self.ft.start()
        self.notifier.ready(f"FT_STANDBY: standing by in group {s.ft_group}")

    def _set_state(self, state: ServerState) -> None:
        self.state = state

    async def _ft_activate(self) -> None:
        self.ft_takeovers += 1
        await self._serve()

    def _ft_fatal(self, reason: str) -> None:
        """Lost the lock or lost to another active: stop serving and exit
        without another write (the caller exits non-zero)."""
        self.fenced = True
        self.stopping = True
        self._set_fatal(reason)

    def _set_fatal(self, reason: str) -> None:
        if self.fatal is not None and not self.fatal.done():
            self.fatal.set_result(reason)

    # ================================================================ NATS
    async def _start_embedded_nats(self) -> None:
        """Run the nats-server child. A child that dies is restarted on the
        same ports (clients, nss's own connections too, reconnect); one
        that keeps dying ends nss with a fatal line. In FT mode too: the
        store lock, not NATS, decides who writes, so a member whose NATS
        blinked cannot become a second writer (README, fault tolerance)."""
        from nss.natsd import EmbeddedNATS, RestartPolicy

        nlog = get_logger("NATS")
        levels = {"DBG": "debug", "TRC": "debug", "WRN": "warning", "ERR": "error", "FTL": "error"}

        def log_line(level: str, text: str) -> None:
            getattr(nlog, levels.get(level, "info"))(text)

        def on_event(level: str, text: str) -> None:
            getattr(self.log, levels.get(level, "info"))(text)

        def on_exit(rc: int) -> None:
            if not self._shutdown:
                reason = self.natsd.failure if self.natsd is not None else ""
                self._set_fatal(reason or f"embedded NATS server exited unexpectedly (status {rc})")

        self.natsd = EmbeddedNATS(
            self.opts.nats,
            log_line=log_line,
            on_exit=on_exit,
            monitor_address=self.monitor.address if self.monitor is not None else "",
            restart=RestartPolicy(),
            on_event=on_event,
        )
        await self.natsd.start()
        self.nats_url = self.natsd.client_url

    async def _start_partitioning(self) -> None:
        """Answer other partitions' channel lists, then check ours (§2)."""
        from nss.server.partitions import PartitionError

        try:
            self.partition = Partition(list(self.sopts.store_limits.per_channel))
        except PartitionError as e:
            raise StartupError(str(e)) from e
        self.exchange = PartitionExchange(
            self.conn, self.sopts.cluster_id, self.server_id, self.partition, self.log.error
        )
        self.exchange.start()
        try:
            await self.exchange.check()
        except PartitionError as e:
            raise StartupError(str(e)) from e
        self.conn.on_discovered = self._on_nats_cluster_grew

    def _on_nats_cluster_grew(self) -> None:
        asyncio.get_running_loop().create_task(self._recheck_partition())

    async def _recheck_partition(self) -> None:
        """A server joined the NATS cluster: it may serve one of our channels."""
        from nss.server.partitions import TOPOLOGY_DELAY, PartitionError

        await asyncio.sleep(TOPOLOGY_DELAY)
        if self.exchange is None or self._shutdown:
            return
        try:
            await self.exchange.check()
        except PartitionError as e:
            self._set_fatal(f"Partitioning error: {e}")
        except (TimeoutError, NatsError) as e:
            self.log.error(f"Partitioning check failed: {e}")

    # ================================================================ shutdown
    async def shutdown(self) -> None:
        """Stop taking requests, finish the I/O path, close store and NATS."""
        if self._shutdown:
            return
        self._shutdown = True
        self.stopping = True
        ctx = self.ctx
        if ctx is not None:
            ctx.closed = ctx.expiry.closed = True
        self.state = ServerState.SHUTDOWN
        self.log.info("Shutting down.")
        self.notifier.stopping()
        if self.ft is not None:
            await self.ft.stop()
        if self.conn is not None and self.conn.connected:
            for sid in self._sids:
                self.conn.unsubscribe(sid)
        if ctx is not None:
            if self.fenced:
                ctx.io.abort()
            else:
                await ctx.io.drain_and_stop()
        for c in list(self.clients.by_id.values()):
            c.stop_heartbeats()
        if self.channels is not None:
            for ch in self.channels.channels.values():
                ch.stop_timers()
                for s in ch.all_subs():
                    s.cancel_timer()
        if self.store is not None and not self.fenced:
            await self.store.close()
        if self.conn is not None:
            await self.conn.close()
        if self.monitor is not None:
            await self.monitor.close()
        if self.natsd is not None:
            await self.natsd.stop()
        self.notifier.close()
