"""StanServer: wires the NATS connection, the store and the I/O path together
and implements the STAN client protocol handlers.

NATS callbacks here only decode and validate; anything that changes state is
queued on the I/O path (``io.py``) so it happens in arrival order. Pings are
the exception the protocol asks for: answered at once from the callback.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TYPE_CHECKING, Any

from google.protobuf.message import DecodeError

from nss import __version__
from nss.log import get_logger
from nss.natsconn import ConnectOptions, NatsConnection, NatsError, NoRespondersError
from nss.nuid import next_nuid
from nss.options import VERSION, Options
from nss.pb import protocol_pb2 as pb
from nss.pb import spb_pb2 as spb
from nss.pb.wire import go_decodes
from nss.redact import url_list
from nss.sdnotify import Notifier
from nss.server.channels import Channel, ChannelRegistry, valid_channel
from nss.server.clients import Client, ClientRegistry, valid_client_id
from nss.server.io import IOPath, encode_puback
from nss.server.monitor_http import MonitorHTTP
from nss.server.partitions import Partition, PartitionExchange
from nss.server.recovery import restore_state

if TYPE_CHECKING:
    from nss.server.ft import FTLoop
from nss.server.subs import Deliverer, QueueGroup, Subscription, sendable
from nss.stores.base import ERR_NO_SRV_BUT_CHANNELS, RecoveredState, Store, StoreError

ERR_INVALID_CONN_REQ = "stan: invalid connection request"
ERR_INVALID_CLIENT_ID = (
    "stan: invalid clientID: only alphanumeric and `-` or `_` characters allowed"
)
ERR_CLIENT_REGISTERED = "stan: clientID already registered"
ERR_INVALID_PUB_REQ = "stan: invalid publish request"
ERR_INVALID_SUB_REQ = "stan: invalid subscription request"
ERR_MISSING_CLIENT = "stan: clientID missing"
ERR_INVALID_ACK_WAIT = "stan: invalid ack wait time, should be >= 1s"
ERR_INVALID_MAX_INFLIGHT = "stan: invalid MaxInflight, should be >= 1"
ERR_INVALID_START = "stan: invalid start position"
ERR_INVALID_SUBJECT = "stan: invalid subject"
ERR_UNKNOWN_CLIENT = "stan: unknown clientID"
ERR_DUP_DURABLE = "stan: duplicate durable registration"
ERR_DURABLE_QUEUE_COLON = (
    "stan: durable name of a durable queue subscriber can't contain the character ':'"
)
ERR_INVALID_UNSUB_REQ = "stan: invalid unsubscribe request"
ERR_UNKNOWN_CHANNEL = "stan: unknown channel"
ERR_INVALID_SUB = "stan: invalid subscription"
ERR_INVALID_CLOSE_REQ = "stan: invalid close request"
ERR_CLIENT_REPLACED = "client has been replaced or is no longer registered"

# Duplicate client ID probe timeout (protocol.md §13).
DUP_CHECK_TIMEOUT = 0.5
# Partitioning: how long a publish or subscribe waits for its client's connect.
PARTITION_CLIENT_WAIT = 1.0
# Standalone self-check for another server of the same cluster (§15).
SELF_CHECK_TIMEOUT = 0.25

_PUBMSG_DESC = pb.PubMsg.DESCRIPTOR
_CTRLMSG_DESC = spb.CtrlMsg.DESCRIPTOR

_PING_REPLACED = pb.PingResponse(error=ERR_CLIENT_REPLACED).SerializeToString()


def go_decode(cls: Any, payload: bytes) -> Any:
    """Decode a request, failing (DecodeError) wherever Go's decoder fails:
    upb accepts a known field with the wrong wire type, gogo-protobuf does
    not, and the protocol answers decode failures with their own errors."""
    msg = cls.FromString(payload)
    if payload and not go_decodes(payload, cls.DESCRIPTOR):
        raise DecodeError(f"wrong wire type in {cls.DESCRIPTOR.name}")
    return msg


class StartupError(Exception):
    pass


def server_subjects(cluster_id: str, discover_prefix: str) -> spb.ServerInfo:
    return spb.ServerInfo(
        ClusterID=cluster_id,
        Discovery=f"{discover_prefix}.{cluster_id}",
        Publish=f"_STAN.pub.{cluster_id}",
        Subscribe=f"_STAN.sub.{cluster_id}",
        Unsubscribe=f"_STAN.unsub.{cluster_id}",
        Close=f"_STAN.close.{cluster_id}",
        SubClose=f"_STAN.subclose.{cluster_id}",
        AcksSubs=f"_STAN.ack.{cluster_id}",
    )


class StanServer:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.sopts = opts.streaming
        self.log = get_logger()
        self.server_id = next_nuid()
        self.start_time = time.time()
        self.state = "STANDALONE"
        self.natsd: Any = None
        self.conn: NatsConnection = None  # type: ignore[assignment]
        self.store: Store = None  # type: ignore[assignment]
        self.info = spb.ServerInfo()
        self.clients = ClientRegistry()
        self.channels: ChannelRegistry = None  # type: ignore[assignment]
        self.deliverer: Deliverer = None  # type: ignore[assignment]
        self.io: IOPath = None  # type: ignore[assignment]
        self.max_payload = 1024 * 1024
        self.in_msgs = 0
        self.in_bytes = 0
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
        self._lock_errors = 0
        # set when the store may no longer be written (lock lost): shutdown
        # then leaves the store and queued requests alone
        self.fenced = False
        self.notifier = Notifier()
        self.partition: Partition | None = None
        self.exchange: PartitionExchange | None = None
        # partitioning: publishes of clients whose connect is still queued
        self._waiting_pubs: dict[bytes | str, list[tuple[pb.PubMsg, str]]] = {}

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
        # -m/-ms: bound before NATS starts, as Go's monitor listener is
        self.monitor = MonitorHTTP.bind(self)
        if not s.nats_server_url:
            await self._start_embedded_nats()
        else:
            self.nats_url = s.nats_server_url
        if self.monitor is not None:
            await self.monitor.start()
        self.notifier.start_watchdog()
        await self._connect_nats()
        try:
            self.store = self._create_store()
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
        if not await asyncio.to_thread(self.store.get_exclusive_lock):
            raise StartupError(
                f'datastore "{self.sopts.file_path}" is in use by another server '
                "(its lock file .rootdir.lck is held); two servers may share a FILE "
                "store only as members of one fault-tolerance group (--ft_group)"
            )

    async def _serve(self) -> None:
        """Recover the store and start answering clients: at start-up, or
        when an FT standby takes over."""
        s = self.sopts
        loop = asyncio.get_running_loop()
        await self._open_store()
        self.deliverer = Deliverer(self.conn.publish, self._schedule_redelivery, loop)
        self.io = IOPath(self, s.io_batch_size, s.io_sleep_time)
        self.deliverer.deliver_later = self.io.deliver_later
        if s.partitioning:
            await self._start_partitioning()
        elif not s.ft_group:
            await self._self_check()
        self._subscribe_protocol()
        self._resume_recovered()
        self.io.start()
        await self.conn.flush()
        self._log_limits()
        if self.monitor is not None:
            self.monitor.set_ready()
        self.log.info("Streaming Server is ready")
        self.notifier.ready(f"{self.state}: serving cluster {self.sopts.cluster_id}")

    # ================================================================ FT
    def _start_standby(self) -> None:
        from nss.server.ft import FTLoop, jitter

        s = self.sopts
        self.state = "FT_STANDBY"
        self.ft = FTLoop(
            self.conn,
            s.cluster_id,
            s.ft_group,
            self.server_id,
            hb_interval=jitter(s.ft_hb_interval),
            missed_interval=jitter(s.ft_hb_missed_interval),
            try_lock=self._ft_try_lock,
            check_lock=self._ft_check_lock,
            activate=self._ft_activate,
            fatal=self._ft_fatal,
            log=self.log,
        )
        if self.monitor is not None:
            self.monitor.set_ready()
        self.ft.start()
        self.notifier.ready(f"FT_STANDBY: standing by in group {s.ft_group}")

    async def _ft_try_lock(self) -> bool:
        return await asyncio.to_thread(self.store.get_exclusive_lock)

    async def _ft_check_lock(self) -> None:
        """The active proves it still owns the store, or stops at once."""
        from nss.server.ft import LockLost

        try:
            owned = await asyncio.to_thread(self.store.check_lock)
        except StoreError as e:
            # The store is unreachable (database restarting): keep serving
            # with error PubAcks rather than abort as Go does after three
            # failures. Nobody can write meanwhile, a contender can only
            # steal once the owner's tick stood still past the steal window,
            # and fencing stops this server the moment another one owns it.
            self._lock_errors += 1
            if self._lock_errors == 1 or self._lock_errors % 30 == 0:
                self.log.error(f"ft: unable to check the store lock: {e}")
            return
        if self._lock_errors:
            self.log.info("ft: store lock checked again, still the owner")
        self._lock_errors = 0
        if not owned:
            raise LockLost("ft: lost store lock, aborting")

    async def _ft_activate(self) -> None:
        self.state = "FT_ACTIVE"
        self.ft_takeovers += 1
        try:
            await self._serve()
        except Exception as e:
            self.state = "FAILED"
            raise StartupError(f"ft: unable to activate: {e}") from e

    def _ft_fatal(self, reason: str) -> None:
        """Lost the lock or lost to another active: stop serving and exit
        without another write (the caller exits non-zero)."""
        self.fenced = True
        self.stopping = True
        if self.fatal is not None and not self.fatal.done():
            self.fatal.set_result(reason)

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
            if not self._shutdown and self.fatal is not None and not self.fatal.done():
                reason = self.natsd.failure if self.natsd is not None else ""
                self.fatal.set_result(
                    reason or f"embedded NATS server exited unexpectedly (status {rc})"
                )

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

    async def _connect_nats(self) -> None:
        s, n = self.sopts, self.opts.nats
        servers = [u for u in self.nats_url.split(",") if u.strip()]
        user = n.user or s.username
        password = n.password or s.password
        token = n.auth_token or s.token
        tls = None
        if s.secure or s.tls_client_cert or s.tls_client_cacert:
            import ssl

            tls = ssl.create_default_context(cafile=s.tls_client_cacert or None)
            if s.tls_client_cert:
                tls.load_cert_chain(s.tls_client_cert, s.tls_client_key or None)
            if s.tls_skip_verify:
                tls.check_hostname = False
                tls.verify_mode = ssl.CERT_NONE
        copts = ConnectOptions(
            servers=servers,
            name=f"_NSS-{s.cluster_id}-general",
            user=user,
            password=password,
            token=token,
            tls=tls,
            tls_hostname=s.tls_server_name or None,
        )
        self.conn = NatsConnection(
            copts,
            on_disconnect=lambda: self.log.warning("Disconnected from NATS"),
            on_reconnect=lambda: self.log.info(f"Reconnected to NATS at {url_list(self.nats_url)}"),
            on_error=lambda e: self.log.error(e),
        )
        try:
            await self.conn.connect()
        except NatsError as e:
            raise StartupError(str(e)) from e
        self.max_payload = self.conn.max_payload
        self.log.info(f"Connected to NATS at {url_list(self.nats_url)}")

    def _create_store(self) -> Store:
        s = self.sopts
        st = s.store_type.upper()
        if st == "MEMORY":
            from nss.stores.memory import MemoryStore

            return MemoryStore(s.store_limits)
        if st == "FILE":
            if not s.file_path:
                raise StartupError("for FILE stores, root directory must be specified")
            from nss.stores.file import FileStore

            return FileStore(s.file_path, s.store_limits, s.file_options)
        if st == "SQL":
            from nss.stores.sql import SQLStore

            return SQLStore(s.store_limits, s.sql_options, ft=bool(s.ft_group))
        raise StartupError(f"unsupported store type: {st}")

    async def _open_store(self) -> None:
        s = self.sopts
        try:
            self.log.info("Recovering the state...")
            rs = await asyncio.to_thread(self._recover_store)
        except StoreError as e:
            raise StartupError(str(e)) from e
        if rs is None:
            self.info = server_subjects(s.cluster_id, s.discover_prefix)
            self.store.init(self.info)
            await self.store.flush()
            self.log.info("No recovered state")
        else:
            if rs.info.ClusterID != s.cluster_id:
                raise StartupError(
                    f'cluster ID "{s.cluster_id}" does not match recovered value of '
                    f'"{rs.info.ClusterID}"'
                )
            self.info = rs.info
            if not self.info.SubClose:
                self.info.SubClose = f"_STAN.subclose.{s.cluster_id}"
                self.store.init(self.info)
                await self.store.flush()
            nsubs = restore_state(rs, self.clients, self.channels)
            self.log.info(f"Recovered {len(self.clients)} client(s)")
            self.log.info(
                f"Recovered {len(self.channels)} channel(s) and {nsubs} subscription(s)"
            )
        self.log.info(f"Message store is {self.store.name}")

    def _recover_store(self) -> RecoveredState | None:
        try:
            return self.store.recover()
        except StoreError as e:
            if str(e) != ERR_NO_SRV_BUT_CHANNELS:
                raise
        # channels but no server info: write it, then recover again (§1.1)
        s = self.sopts
        self.store.init(server_subjects(s.cluster_id, s.discover_prefix))
        return self.store.recover()

    def _resume_recovered(self) -> None:
        """Start serving what was recovered: ack inboxes, heartbeats,
        redelivery of unacked messages, then normal delivery."""
        for client in self.clients.by_id.values():
            self._arm_heartbeat(client, self.sopts.hb_interval)
        for ch in self.channels.channels.values():
            online = list(ch.plain)
            for g in ch.queues.values():
                online.extend(g.members)
            for sub in online:
                self._subscribe_acks(sub)
                sub.initialized = True
                if sub.pending:
                    self.deliverer.redeliver(sub)
                self.io.deliver_later(sub.group if sub.group is not None else sub)
            if ch.msgs.limits.max_age > 0:
                self._expire_channel(ch)
            if not ch.has_active_subs():
                self._arm_inactivity(ch)

    def _log_limits(self) -> None:
        """The limits table of the start-up banner, as the Go server logs it."""
        from nss.stores.limits import banner_lines

        for line in banner_lines(self.sopts.store_limits):
            self.log.info(line)

    async def _self_check(self) -> None:
        """Refuse to start beside a live server of the same cluster ID."""
        cid = self.info.ClusterID
        req = pb.ConnectRequest(clientID=cid, heartbeatInbox="_INBOX." + next_nuid())
        try:
            data = await self.conn.request(
                self.info.Discovery, req.SerializeToString(), SELF_CHECK_TIMEOUT
            )
        except (TimeoutError, NoRespondersError, NatsError):
            return
        try:
            resp = pb.ConnectResponse.FromString(data)
        except DecodeError:
            raise StartupError(
                f'discovered another streaming server with cluster ID "{cid}"'
            ) from None
        if resp.closeRequests:
            try:
                await self.conn.request(
                    resp.closeRequests,
                    pb.CloseRequest(clientID=cid).SerializeToString(),
                    SELF_CHECK_TIMEOUT,
                )
            except (TimeoutError, NatsError):
                pass
        raise StartupError(f'discovered another streaming server with cluster ID "{cid}"')

    async def _start_partitioning(self) -> None:
        """Answer other partitions' channel lists, then check ours (§2)."""
        from nss.server.partitions import Partition, PartitionError, PartitionExchange

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
            if self.fatal is not None and not self.fatal.done():
                self.fatal.set_result(f"Partitioning error: {e}")
        except (TimeoutError, NatsError) as e:
            self.log.error(f"Partitioning check failed: {e}")

    def _subscribe_protocol(self) -> None:
        info, sub = self.info, self.conn.subscribe
        if self.partition is not None:
            publish_sids = [
                sub(f"{info.Publish}.{name}", self._on_publish) for name in self.partition.names
            ]
        else:
            publish_sids = [sub(info.Publish + ".>", self._on_publish)]

        def unless_stopping(cb: Any) -> Any:
            def on_request(subject: str, reply: str, payload: bytes) -> None:
                if not self.stopping:
                    cb(subject, reply, payload)

            return on_request

        self._sids = [
            sub(info.Discovery, unless_stopping(self._on_connect)),
            sub(info.Discovery + ".pings", self._on_ping),
            sub(info.Subscribe, unless_stopping(self._on_subscribe)),
            sub(info.Unsubscribe, unless_stopping(self._on_unsubscribe)),
            sub(info.SubClose, unless_stopping(self._on_subclose)),
            sub(info.Close, unless_stopping(self._on_close)),
            *publish_sids,
        ]

    async def shutdown(self) -> None:
        """Stop taking requests, finish the I/O path, close store and NATS."""
        if self._shutdown:
            return
        self._shutdown = True
        self.stopping = True
        self.state = "SHUTDOWN"
        self.log.info("Shutting down.")
        self.notifier.stopping()
        if self.ft is not None:
            await self.ft.stop()
        if self.conn is not None and self.conn.connected:
            for sid in self._sids:
                self.conn.unsubscribe(sid)
        if self.io is not None:
            if self.fenced:
                self.io.abort()
            else:
                await self.io.drain_and_stop()
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

    # ================================================================ helpers
    def _respond(self, reply: str, msg: Any) -> None:
        if reply:
            self.conn.publish(reply, msg.SerializeToString())

    def lookup_or_create_channel(self, name: str) -> Channel:
        ch, created = self.channels.lookup_or_create(name)
        if created:
            self.log.debug(f'Channel "{name}" has been created')
            self._arm_inactivity(ch)
        return ch

    def after_publish(self, ch: Channel) -> None:
        """Called by the I/O path after a batch stored messages in ``ch``."""
        ch.last_activity = ch.last_ts
        if ch.msgs.limits.max_age > 0 and ch.age_handle is None:
            self._arm_age(ch, ch.msgs.limits.max_age)

    def _arm_age(self, ch: Channel, delay: float) -> None:
        loop = asyncio.get_running_loop()
        ch.age_handle = loop.call_later(delay, self.io.call, self._expire_channel, ch)

    def _expire_channel(self, ch: Channel) -> None:
        ch.age_handle = None
        if self.channels.get(ch.name) is not ch:
            return
        nxt = ch.msgs.expire(time.time_ns())
        if nxt is not None:
            self._arm_age(ch, nxt)

    def _arm_inactivity(self, ch: Channel, delay: float | None = None) -> None:
        mi = ch.msgs.limits.max_inactivity
        if mi <= 0 or self._shutdown:
            return
        if ch.inactivity_handle is not None:
            ch.inactivity_handle.cancel()
        loop = asyncio.get_running_loop()
        ch.inactivity_handle = loop.call_later(
            mi if delay is None else delay, self.io.acall, self._check_inactive, ch
        )

    async def _check_inactive(self, ch: Channel) -> None:
        ch.inactivity_handle = None
        if self.channels.get(ch.name) is not ch or ch.has_active_subs():
            return
        mi = ch.msgs.limits.max_inactivity
        idle = (time.time_ns() - ch.last_activity) / 1e9 if ch.last_activity else mi
        if ch.last_activity and idle < mi:
            self._arm_inactivity(ch, mi - idle)
            return
        ch.deleting = True
        try:
            self.store.delete_channel(ch.name)
            await self.store.flush()
        except StoreError as e:
            self.log.error(f'Unable to delete channel "{ch.name}": {e}')
            ch.deleting = False
            return
        for s in ch.all_subs():
            s.cancel_timer()
        self.channels.remove(ch.name)
        self.log.info(f'Channel "{ch.name}" has been deleted due to inactivity')

    # ================================================================ connect
    def _on_connect(self, subject: str, reply: str, payload: bytes) -> None:
        self.io.acall(self._handle_connect, payload, reply)

    async def _handle_connect(self, payload: bytes, reply: str) -> None:
        try:
            req = go_decode(pb.ConnectRequest, payload)
        except DecodeError:
            req = None
        if req is None or not req.heartbeatInbox:
            self.log.error(f"Invalid connection request: {payload[:64]!r}")
            self._respond(reply, pb.ConnectResponse(error=ERR_INVALID_CONN_REQ))
            return
        if not valid_client_id(req.clientID):
            self._respond(reply, pb.ConnectResponse(error=ERR_INVALID_CLIENT_ID))
            return
        cid = req.clientID
        existing = self.clients.get(cid)
        if existing is not None:
            if cid in self.clients.checking:
                self._respond(reply, pb.ConnectResponse(error=ERR_CLIENT_REGISTERED))
                return
            self.clients.checking.add(cid)
            asyncio.get_running_loop().create_task(self._probe_duplicate(existing, req, reply))
            return
        await self._register_client(req, reply)

    async def _probe_duplicate(self, old: Client, req: pb.ConnectRequest, reply: str) -> None:
        """Ask the registered client's heartbeat inbox whether it is still alive."""
        alive = True
        try:
            if not sendable(old.hb_inbox):  # would break our NATS connection
                await asyncio.sleep(DUP_CHECK_TIMEOUT)
                raise TimeoutError
            await self.conn.request(old.hb_inbox, b"", DUP_CHECK_TIMEOUT)
        except (TimeoutError, NoRespondersError):
            alive = False
        except NatsError:
            alive = True
        if alive:
            self.clients.checking.discard(req.clientID)
            self.log.error(f"[Client:{req.clientID}] Connect failed; already connected")
            self._respond(reply, pb.ConnectResponse(error=ERR_CLIENT_REGISTERED))
            return
        self.io.acall(self._replace_client, old, req, reply)

    async def _replace_client(self, old: Client, req: pb.ConnectRequest, reply: str) -> None:
        self.clients.checking.discard(req.clientID)
        if self.clients.get(old.id) is old:
            self.log.debug(f"[Client:{old.id}] Replacing old client (heartbeat probe failed)")
            await self._close_client(old)
        if self.clients.get(req.clientID) is not None:
            self._respond(reply, pb.ConnectResponse(error=ERR_CLIENT_REGISTERED))
            return
        await self._register_client(req, reply)

    async def _register_client(self, req: pb.ConnectRequest, reply: str) -> None:
        info = spb.ClientInfo(
            ID=req.clientID,
            HbInbox=req.heartbeatInbox,
            ConnID=req.connID,
            Protocol=req.protocol,
            PingInterval=req.pingInterval,
            PingMaxOut=req.pingMaxOut,
        )
        try:
            self.store.add_client(info)
            await self.store.flush()
        except StoreError as e:
            self._respond(reply, pb.ConnectResponse(error=str(e)))
            return
        client = Client(
            id=req.clientID,
            hb_inbox=req.heartbeatInbox,
            conn_id=req.connID,
            protocol=req.protocol,
            ping_interval=req.pingInterval,
            ping_max_out=req.pingMaxOut,
        )
        self.clients.add(client)
        self._arm_heartbeat(client, self.sopts.hb_interval)
        info_ = self.info
        resp = pb.ConnectResponse(
            pubPrefix=info_.Publish,
            subRequests=info_.Subscribe,
            unsubRequests=info_.Unsubscribe,
            closeRequests=info_.Close,
            subCloseRequests=info_.SubClose,
            protocol=1,
        )
        if req.protocol >= 1:
            resp.pingRequests = info_.Discovery + ".pings"
            resp.pingInterval = req.pingInterval
            resp.pingMaxOut = req.pingMaxOut
        self._respond(reply, resp)
        self.log.debug(f"[Client:{client.id}] Connected (Inbox={client.hb_inbox})")

    # ================================================================ heartbeats
    def _arm_heartbeat(self, client: Client, delay: float) -> None:
        if self._shutdown or client.closed:
            return
        if client.hb_handle is not None:
            client.hb_handle.cancel()
        loop = asyncio.get_running_loop()
        client.hb_handle = loop.call_later(delay, self._heartbeat, client)

    def _heartbeat(self, client: Client) -> None:
        client.hb_handle = None
        if client.closed or self._shutdown:
            return
        client.hb_task = asyncio.get_running_loop().create_task(self._heartbeat_probe(client))

    async def _heartbeat_probe(self, client: Client) -> None:
        s = self.sopts
        try:
            if not sendable(client.hb_inbox):  # would break our NATS connection
                await asyncio.sleep(s.hb_timeout)
                raise TimeoutError
            await self.conn.request(client.hb_inbox, b"", s.hb_timeout)
            ok = True
        except (TimeoutError, NatsError):
            ok = False
        if client.closed:
            return
        if ok:
            if client.failed_hb:
                client.failed_hb = 0
                self._flag_failed_hb(client, False)
        else:
            client.failed_hb += 1
            if client.failed_hb == 1:
                self._flag_failed_hb(client, True)
            self.log.debug(
                f"[Client:{client.id}] Timed out on heartbeats (count={client.failed_hb})"
            )
            if client.failed_hb > s.hb_fail_count:
                self.log.info(f"[Client:{client.id}] Timed out on heartbeats, closing")
                self.io.acall(self._close_client_if_current, client)
                return
        self._arm_heartbeat(client, s.hb_interval)

    def _flag_failed_hb(self, client: Client, failed: bool) -> None:
        for sub in client.subs:
            sub.failed_hb = failed

    async def _close_client_if_current(self, client: Client) -> None:
        if self.clients.get(client.id) is client:
            await self._close_client(client)

    # ================================================================ pings
    def _on_ping(self, subject: str, reply: str, payload: bytes) -> None:
        if not payload or not reply:
            return
        try:
            ping = go_decode(pb.Ping, payload)
        except DecodeError:
            return
        client = self.clients.by_conn_id(ping.connID)
        if client is None:
            self.conn.publish(reply, _PING_REPLACED)
            return
        self.conn.publish(reply, b"")
        if client.failed_hb:
            self._arm_heartbeat(client, 0.001)

    # ================================================================ publish
    def _on_publish(self, subject: str, reply: str, payload: bytes) -> None:
        try:
            pm = pb.PubMsg.FromString(payload)
        except DecodeError:
            self._undecodable_publish(subject, reply, payload, "")
            return
        if pm.connID:
            client = self.clients.by_conn.get(pm.connID)
        else:
            client = self.clients.by_id.get(pm.clientID)
        if client is None and self.partition is not None and pm.guid and valid_channel(pm.subject):
            self.in_msgs += 1
            self.in_bytes += len(payload)
            self._publish_when_known(pm, reply)
            return
        if client is None or not pm.guid or not valid_channel(pm.subject):
            if not go_decodes(payload, _PUBMSG_DESC):
                # the Go decoder rejects what upb let through (wrong wire type)
                self._undecodable_publish(subject, reply, payload, pm.guid)
                return
            self.in_msgs += 1
            self.in_bytes += len(payload)
            if reply:
                self.conn.publish(reply, encode_puback(pm.guid, ERR_INVALID_PUB_REQ))
            return
        self.in_msgs += 1
        self.in_bytes += len(payload)
        self.io.publish(pm, reply)

    def _client_of(self, client_id: str, conn_id: bytes) -> Client | None:
        if conn_id:
            return self.clients.by_conn.get(conn_id)
        return self.clients.by_id.get(client_id)

    def _publish_when_known(self, pm: pb.PubMsg, reply: str) -> None:
        """Partitioning: the connect went to every partition and ours may still
        be queued; hold the client's publishes (in order) up to 1 s for it."""
        key: bytes | str = pm.connID or pm.clientID
        waiting = self._waiting_pubs.get(key)
        if waiting is not None:
            waiting.append((pm, reply))
            return
        self._waiting_pubs[key] = [(pm, reply)]

        async def wait() -> None:
            known = await self._wait_client(pm.clientID, pm.connID)
            for m, r in self._waiting_pubs.pop(key, []):
                if known:
                    self.io.publish(m, r)
                elif r:
                    self.conn.publish(r, encode_puback(m.guid, ERR_INVALID_PUB_REQ))

        asyncio.get_running_loop().create_task(wait())

    async def _wait_client(self, client_id: str, conn_id: bytes = b"") -> bool:
        deadline = asyncio.get_running_loop().time() + PARTITION_CLIENT_WAIT
        while self._client_of(client_id, conn_id) is None:
            if asyncio.get_running_loop().time() >= deadline or self._shutdown:
                return False
            await asyncio.sleep(0.01)
        return True

    def _undecodable_publish(self, subject: str, reply: str, payload: bytes, guid: str) -> None:
        if go_decodes(payload, _CTRLMSG_DESC):
            return  # a legacy CtrlMsg: silently ignored (protocol.md §6)
        self.log.error(f"Unable to decode publish message on {subject}")
        if reply:
            self.conn.publish(reply, encode_puback(guid, ERR_INVALID_PUB_REQ))

    # ================================================================ subscribe
    def _on_subscribe(self, subject: str, reply: str, payload: bytes) -> None:
        self.io.acall(self._handle_subscribe, payload, reply)

    def _sub_error(self, reply: str, err: str) -> None:
        self._respond(reply, pb.SubscriptionResponse(error=err))

    async def _handle_subscribe(self, payload: bytes, reply: str, retried: bool = False) -> None:
        try:
            req = go_decode(pb.SubscriptionRequest, payload)
        except DecodeError:
            self._sub_error(reply, ERR_INVALID_SUB_REQ)
            return
        err = ""
        if not req.clientID:
            err = ERR_MISSING_CLIENT
        elif req.ackWaitInSecs <= 0:
            err = ERR_INVALID_ACK_WAIT
        elif req.maxInFlight <= 0:
            err = ERR_INVALID_MAX_INFLIGHT
        elif not 0 <= int(req.startPosition) <= 4:
            err = ERR_INVALID_START
        elif not valid_channel(req.subject):
            err = ERR_INVALID_SUBJECT
        if err:
            self._sub_error(reply, err)
            return
        if self.partition is not None and not self.partition.owns(req.subject):
            return  # another partition's channel: it answers, or the client times out
        client = self.clients.get(req.clientID)
        if client is None:
            if self.partition is None:
                self._sub_error(reply, ERR_UNKNOWN_CLIENT)
            elif not retried:
                # the connect may still be queued here: retry once it is known
                async def retry() -> None:
                    if await self._wait_client(req.clientID):
                        self.io.acall(self._handle_subscribe, payload, reply, True)
                    else:
                        self._sub_error(reply, ERR_INVALID_SUB_REQ)

                asyncio.get_running_loop().create_task(retry())
            else:
                self._sub_error(reply, ERR_INVALID_SUB_REQ)
            return
        try:
            ch = self.lookup_or_create_channel(req.subject)
        except (StoreError, ValueError) as e:
            self._sub_error(reply, str(e))
            return
        try:
            sub, resumed = await self._create_or_resume(ch, client, req)
        except (StoreError, ValueError) as e:
            self._sub_error(reply, str(e))
            if not ch.has_active_subs():
                self._arm_inactivity(ch)
            return
        await ch.subs_store.flush()
        self._attach(sub, client)
        if ch.inactivity_handle is not None:
            ch.inactivity_handle.cancel()
            ch.inactivity_handle = None
        self._respond(reply, pb.SubscriptionResponse(ackInbox=sub.ack_inbox))
        sub.initialized = True
        self.log.debug(
            f"[Client:{client.id}] Started new subscription, subject={ch.name} "
            f"inbox={sub.inbox} queue={sub.qgroup} durable={sub.durable_name} "
            f"subid={sub.id} sent={sub.last_sent}"
        )
        if resumed:
            self.deliverer.redeliver_pending_now(sub)
        self.io.deliver_later(sub.group if sub.group is not None else sub)

    def _fill(self, sub: Subscription, client: Client, req: pb.SubscriptionRequest) -> None:
        sub.client_id = client.id
        sub.client = client
        sub.inbox = req.inbox
        sub.ack_inbox = "_INBOX." + next_nuid()
        sub.max_inflight = req.maxInFlight
        sub.ack_wait = req.ackWaitInSecs
        sub.stalled = len(sub.pending) >= sub.max_inflight
        sub.failed_hb = client.failed_hb > 0

    async def _create_or_resume(
        self, ch: Channel, client: Client, req: pb.SubscriptionRequest
    ) -> tuple[Subscription, bool]:
        store = ch.subs_store
        if req.qGroup:
            # checked after the channel was created, as Go does (processSub)
            if req.durableName and ":" in req.durableName:
                raise ValueError(ERR_DURABLE_QUEUE_COLON)
            gname = f"{req.durableName}:{req.qGroup}" if req.durableName else req.qGroup
            group = ch.queues.get(gname)
            if group is not None and group.shadow is not None and not group.members:
                sub = group.shadow
                self._fill(sub, client, req)
                sub.last_sent = max(sub.last_sent, group.last_sent)
                store.update_sub(sub.to_state())
                group.shadow = None
                group.members.append(sub)
                sub.group = group
                return sub, True
            sub = Subscription(ch)
            self._fill(sub, client, req)
            sub.qgroup = gname
            sub.is_durable = bool(req.durableName)
            sub.last_sent = (
                group.last_sent if group is not None else self._start_position(ch, req)
            )
            state = sub.to_state()
            store.create_sub(state)
            sub.id = state.ID
            if group is None:
                group = QueueGroup(gname, ch, bool(req.durableName))
                group.last_sent = sub.last_sent
                ch.queues[gname] = group
            group.members.append(sub)
            sub.group = group
            return sub, False
        if req.durableName:
            key = f"{client.id}-{ch.name}-{req.durableName}"
            existing = ch.durables.get(key)
            if existing is not None and existing.client is not None:
                if not self.sopts.replace_durable:
                    raise ValueError(ERR_DUP_DURABLE)
                self._remove_sub(existing, unsubscribe=False)
            if existing is not None:
                self._fill(existing, client, req)
                existing.is_closed = False
                store.update_sub(existing.to_state())
                return existing, True
            sub = Subscription(ch)
            self._fill(sub, client, req)
            sub.durable_name = req.durableName
            sub.is_durable = True
            sub.last_sent = self._start_position(ch, req)
            state = sub.to_state()
            store.create_sub(state)
            sub.id = state.ID
            ch.durables[key] = sub
            return sub, False
        sub = Subscription(ch)
        self._fill(sub, client, req)
        sub.last_sent = self._start_position(ch, req)
        state = sub.to_state()
        store.create_sub(state)
        sub.id = state.ID
        return sub, False

    @staticmethod
    def _start_position(ch: Channel, req: pb.SubscriptionRequest) -> int:
        """The initial lastSent of a new subscription (protocol.md §7.1)."""
        msgs = ch.msgs
        first, last = msgs.first_sequence(), msgs.last_sequence()
        pos = int(req.startPosition)
        if pos == pb.NewOnly:
            return last
        if pos == pb.LastReceived:
            return last - 1 if last > 0 else 0
        if pos == pb.TimeDeltaStart:
            seq = msgs.get_sequence_from_timestamp(time.time_ns() - req.startTimeDelta)
            return seq - 1 if seq > 0 else 0
        if pos == pb.SequenceStart:
            s = req.startSequence
            if s < first:
                return first - 1
            if s > last:
                return last
            return s - 1 if s > 0 else 0
        return first - 1 if first > 0 else 0  # First

    def _attach(self, sub: Subscription, client: Client) -> None:
        self._subscribe_acks(sub)
        client.subs.append(sub)
        if sub.group is None:
            sub.channel.plain.append(sub)

    def _subscribe_acks(self, sub: Subscription) -> None:
        """Listen on the subscription's ack inbox (the server's own subject)."""
        sub.ack_sid = self.conn.subscribe(
            sub.ack_inbox, lambda _s, _r, payload: self._on_ack(sub, payload)
        )
        sub.channel.by_ack[sub.ack_inbox] = sub

    def _on_ack(self, sub: Subscription, payload: bytes) -> None:
        try:
            ack = pb.Ack.FromString(payload)
        except DecodeError:
            self.log.error(f"Unable to decode ack on {sub.ack_inbox}")
            return
        if ack.subject != sub.channel.name:
            return
        self.io.ack(sub, ack.sequence)

    def _schedule_redelivery(self, sub: Subscription) -> None:
        self.io.call(self.deliverer.redeliver, sub)

    # ================================================================ unsubscribe
    def _on_unsubscribe(self, subject: str, reply: str, payload: bytes) -> None:
        self.io.acall(self._handle_unsubscribe, payload, reply, False)

    def _on_subclose(self, subject: str, reply: str, payload: bytes) -> None:
        self.io.acall(self._handle_unsubscribe, payload, reply, True)

    async def _handle_unsubscribe(self, payload: bytes, reply: str, close: bool) -> None:
        try:
            req = go_decode(pb.UnsubscribeRequest, payload)
        except DecodeError:
            self._sub_error(reply, ERR_INVALID_UNSUB_REQ)
            return
        if self.partition is not None and not self.partition.owns(req.subject):
            return
        ch = self.channels.get(req.subject)
        if ch is None:
            self._sub_error(reply, ERR_UNKNOWN_CHANNEL)
            return
        sub = ch.by_ack.get(req.inbox)
        if sub is None:
            for s in ch.by_ack.values():
                if s.inbox == req.inbox:
                    sub = s
                    break
        if sub is None:
            self._sub_error(reply, ERR_INVALID_SUB)
            return
        if sub.client is None or sub.client.id != req.clientID:
            self._sub_error(reply, ERR_UNKNOWN_CLIENT)
            return
        what = "Closing" if close else "Unsubscribing"
        self.log.debug(
            f"[Client:{req.clientID}] {what} subscription subject={ch.name} "
            f"inbox={sub.inbox} durable={sub.durable_name} subid={sub.id}"
        )
        try:
            self._remove_sub(sub, unsubscribe=not close)
            await ch.subs_store.flush()
        except StoreError as e:
            self._sub_error(reply, str(e))
            return
        self._respond(reply, pb.SubscriptionResponse())

    def _remove_sub(self, sub: Subscription, unsubscribe: bool) -> None:
        """Take a subscription off line: gone, or kept as an offline durable or
        a durable queue group's shadow (protocol.md §9)."""
        ch = sub.channel
        store = ch.subs_store
        sub.cancel_timer()
        if sub.ack_sid:
            self.conn.unsubscribe(sub.ack_sid)
            sub.ack_sid = 0
        ch.by_ack.pop(sub.ack_inbox, None)
        client = sub.client
        if client is not None and sub in client.subs:
            client.subs.remove(sub)
        sub.client = None
        sub.initialized = False
        group = sub.group
        if group is not None:
            if sub in group.members:
                group.members.remove(sub)
            group.last_sent = max(group.last_sent, sub.last_sent)
            if group.members:
                store.delete_sub(sub.id)
                self.deliverer.transfer_pending(sub, group)
                self.io.deliver_later(group)
            elif group.durable and not unsubscribe:
                sub.saved_client_id = sub.client_id
                sub.client_id = ""
                sub.last_sent = group.last_sent
                sub.stalled = False
                store.update_sub(sub.to_state())
                group.shadow = sub
            else:
                store.delete_sub(sub.id)
                ch.queues.pop(group.name, None)
        else:
            if sub in ch.plain:
                ch.plain.remove(sub)
            if sub.is_durable and not unsubscribe:
                sub.is_closed = True
                sub.stalled = False
                store.update_sub(sub.to_state())
            else:
                store.delete_sub(sub.id)
                if sub.is_durable:
                    key = sub.durable_key
                    if ch.durables.get(key) is sub:
                        del ch.durables[key]
        if not ch.has_active_subs():
            self._arm_inactivity(ch)

    # ================================================================ close
    def _on_close(self, subject: str, reply: str, payload: bytes) -> None:
        self.io.acall(self._handle_close, payload, reply)

    async def _handle_close(self, payload: bytes, reply: str) -> None:
        try:
            req = go_decode(pb.CloseRequest, payload)
        except DecodeError:
            self._respond(reply, pb.CloseResponse(error=ERR_INVALID_CLOSE_REQ))
            return
        client = self.clients.get(req.clientID)
        if client is None:
            self._respond(reply, pb.CloseResponse(error=ERR_UNKNOWN_CLIENT))
            return
        try:
            await self._close_client(client)
        except StoreError as e:
            self._respond(reply, pb.CloseResponse(error=str(e)))
            return
        self._respond(reply, pb.CloseResponse())

    async def _close_client(self, client: Client) -> None:
        self.clients.remove(client.id)
        self.store.delete_client(client.id)
        chans: dict[Channel, None] = {}
        for sub in list(client.subs):
            chans[sub.channel] = None
            self._remove_sub(sub, unsubscribe=False)
        for ch in chans:
            await ch.subs_store.flush()
        await self.store.flush()
        self.log.debug(f"[Client:{client.id}] Closed")

