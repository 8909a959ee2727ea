"""Start-up steps: the NATS connection, the store and its recovery, the
limits banner, and the checks against other servers (same cluster ID,
partitions). Each is a function of what it needs, so ``StanServer`` only
sequences them."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from google.protobuf.message import DecodeError

from nss.nats.connection import ConnectOptions, NatsConnection, NatsError, NoRespondersError
from nss.nuid import next_nuid
from nss.options import Options, StreamingOptions
from nss.pb import protocol_pb2 as pb
from nss.pb import spb_pb2 as spb
from nss.redact import url_list
from nss.server.core.channels import ChannelRegistry
from nss.server.core.clients import ClientRegistry
from nss.server.core.recovery import restore_state
from nss.stores.base import (
    ERR_NO_SRV_BUT_CHANNELS,
    RecoveredState,
    Store,
    StoreError,
    check_complete,
)

# Standalone self-check for another server of the same cluster (§15).
SELF_CHECK_TIMEOUT = 0.25


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


# ---------------------------------------------------------------- NATS
def connect_options(opts: Options, nats_url: str) -> ConnectOptions:
    """nss's own connection: credentials and TLS from the NATS options or
    the streaming block."""
    s, n = opts.streaming, opts.nats
    tls = None
    if s.secure or s.tls_client_cert or s.tls_client_cacert:
        tls = ssl.create_default_context(cafile=s.tls_client_cacert or None)
        if s.tls_client_cert:
            tls.load_cert_chain(s.tls_client_cert, s.tls_client_key or None)
        if s.tls_skip_verify:
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
    return ConnectOptions(
        servers=[u for u in nats_url.split(",") if u.strip()],
        name=f"_NSS-{s.cluster_id}-general",
        user=n.user or s.username,
        password=n.password or s.password,
        token=n.auth_token or s.token,
        tls=tls,
        tls_hostname=s.tls_server_name or None,
    )


async def connect_nats(opts: Options, nats_url: str, log: Any) -> NatsConnection:
    conn = NatsConnection(
        connect_options(opts, nats_url),
        on_disconnect=lambda: log.warning("Disconnected from NATS"),
        on_reconnect=lambda: log.info(f"Reconnected to NATS at {url_list(nats_url)}"),
        on_error=lambda e: log.error(e),
    )
    try:
        await conn.connect()
    except NatsError as e:
        raise StartupError(str(e)) from e
    log.info(f"Connected to NATS at {url_list(nats_url)}")
    return conn


# ---------------------------------------------------------------- store
def create_store(s: StreamingOptions) -> Store:
    """The configured store, with encryption at rest when it is on."""
    from nss.stores.crypto import CryptoConfigError, StoreCrypto

    try:
        crypto = StoreCrypto.from_options(s)
    except CryptoConfigError as e:
        raise StartupError(str(e)) from None
    store = _new_store(s)
    store.crypto = crypto
    return store


def _new_store(s: StreamingOptions) -> Store:
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


async def open_store(
    store: Store,
    s: StreamingOptions,
    clients: ClientRegistry,
    channels: ChannelRegistry,
    log: Any,
) -> spb.ServerInfo:
    """Recover the store into the registries; the server's subjects."""
    try:
        log.info("Recovering the state...")
        rs = await asyncio.to_thread(_recover, store, s)
    except StoreError as e:
        raise StartupError(str(e)) from e
    if rs is None:
        info = server_subjects(s.cluster_id, s.discover_prefix)
        store.init(info)
        await store.flush()
        log.info("No recovered state")
    else:
        if rs.info.ClusterID != s.cluster_id:
            raise StartupError(
                f'cluster ID "{s.cluster_id}" does not match recovered value of '
                f'"{rs.info.ClusterID}"'
            )
        info = rs.info
        if not info.SubClose:
            info.SubClose = f"_STAN.subclose.{s.cluster_id}"
            store.init(info)
            await store.flush()
        nsubs = restore_state(rs, clients, channels)
        log.info(f"Recovered {len(clients)} client(s)")
        log.info(f"Recovered {len(channels)} channel(s) and {nsubs} subscription(s)")
    log.info(f"Message store is {store.name}")
    return info


def _recover(store: Store, s: StreamingOptions) -> RecoveredState | None:
    try:
        rs = store.recover()
        check_complete(rs)
        return rs
    except StoreError as e:
        if str(e) != ERR_NO_SRV_BUT_CHANNELS:
            raise
    # channels but no server info: write it, then recover again (§1.1)
    store.init(server_subjects(s.cluster_id, s.discover_prefix))
    rs = store.recover()
    check_complete(rs)
    return rs


# ---------------------------------------------------------------- banner
def log_limits(s: StreamingOptions, log: Any) -> None:
    """The limits table of the start-up banner, as the Go server logs it."""
    from nss.stores.limits import banner_lines

    for line in banner_lines(s.store_limits):
        log.info(line)


# ---------------------------------------------------------------- other servers
async def self_check(conn: NatsConnection, info: spb.ServerInfo) -> None:
    """Refuse to start beside a live server of the same cluster ID."""
    cid = info.ClusterID
    req = pb.ConnectRequest(clientID=cid, heartbeatInbox="_INBOX." + next_nuid())
    try:
        data = await conn.request(info.Discovery, req.SerializeToString(), SELF_CHECK_TIMEOUT)
    except (TimeoutError, NoRespondersError, NatsError):
        return
    try:
        resp = pb.ConnectResponse.FromString(data)
    except DecodeError:
        raise StartupError(f'discovered another streaming server with cluster ID "{cid}"') from None
    if resp.closeRequests:
        try:
            await conn.request(
                resp.closeRequests,
                pb.CloseRequest(clientID=cid).SerializeToString(),
                SELF_CHECK_TIMEOUT,
            )
        except (TimeoutError, NatsError):
            pass
    raise StartupError(f'discovered another streaming server with cluster ID "{cid}"')
