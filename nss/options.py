"""Option dataclasses shared by the command line, the config file and the server.

Durations are kept in seconds (float) internally; the Go server keeps
nanoseconds, so conversions happen only at the edges (monitoring JSON, logs).
Defaults are the Go server v0.25.6 defaults so that a user who passes no flag
gets the same behaviour.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

DEFAULT_CLUSTER_ID = "test-cluster"
DEFAULT_DISCOVER_PREFIX = "_STAN.discover"
DEFAULT_PUB_PREFIX = "_STAN.pub"
DEFAULT_SUB_PREFIX = "_STAN.sub"
DEFAULT_UNSUB_PREFIX = "_STAN.unsub"
DEFAULT_CLOSE_PREFIX = "_STAN.close"
DEFAULT_SUBCLOSE_PREFIX = "_STAN.subclose"
DEFAULT_ACKS_PREFIX = "_STAN.ack"

VERSION = "0.25.6"
NATS_VERSION_COMPAT = "v2.9.24"


@dataclass
class ChannelLimits:
    """Per-channel limits. Globally 0 means unlimited; per channel 0 means
    inherit and a negative value means unlimited (resolved by ``build``)."""

    max_msgs: int = 0
    max_bytes: int = 0
    max_age: float = 0.0  # seconds
    max_subscriptions: int = 0
    max_inactivity: float = 0.0  # seconds


@dataclass
class StoreLimits(ChannelLimits):
    max_channels: int = 100
    max_msgs: int = 1_000_000
    max_bytes: int = 1_000_000 * 1024
    max_age: float = 0.0
    max_subscriptions: int = 1000
    max_inactivity: float = 0.0
    per_channel: dict[str, ChannelLimits] = field(default_factory=dict)

    def clone(self) -> StoreLimits:
        return copy.deepcopy(self)

    def channel_defaults(self) -> ChannelLimits:
        """The global per-channel limits, for channels no entry matches."""
        return ChannelLimits(
            max_msgs=self.max_msgs,
            max_bytes=self.max_bytes,
            max_age=self.max_age,
            max_subscriptions=self.max_subscriptions,
            max_inactivity=self.max_inactivity,
        )


@dataclass
class FileOptions:
    compact_enabled: bool = True
    compact_frag: int = 50
    compact_interval: int = 300
    compact_min_size: int = 1024 * 1024
    buffer_size: int = 2 * 1024 * 1024
    do_crc: bool = True
    crc_poly: int = 0xEDB88320
    do_sync: bool = True
    slice_max_msgs: int = 0
    slice_max_bytes: int = 64 * 1024 * 1024
    slice_max_age: float = 0.0
    slice_archive_script: str = ""
    fds_limit: int = 0
    parallel_recovery: int = 1
    truncate_bad_eof: bool = False
    read_buffer_size: int = 2 * 1024 * 1024
    auto_sync: float = 60.0


@dataclass
class SQLOptions:
    driver: str = ""
    source: str = ""
    no_caching: bool = False
    max_open_conns: int = 0
    bulk_insert_limit: int = 0
    # nss: FT contender steals the StoreLock after the owner's tick stood
    # still this long (Go: 3 x 1.5 s); must exceed the owner's 1 s refresh
    lock_steal_after: float = 1.5


@dataclass
class ClusterOptions:
    """Raft clustering options: parsed for compatibility, not implemented."""

    clustered: bool = False
    node_id: str = ""
    bootstrap: bool = False
    peers: list[str] = field(default_factory=list)
    log_path: str = ""
    log_cache_size: int = 512
    log_snapshots: int = 2
    trailing_logs: int = 10240
    sync: bool = False
    raft_logging: bool = False
    allow_add_remove_node: bool = False
    proceed_on_restore_failure: bool = False


@dataclass
class StreamingOptions:
    cluster_id: str = DEFAULT_CLUSTER_ID
    discover_prefix: str = DEFAULT_DISCOVER_PREFIX
    store_type: str = "MEMORY"
    file_path: str = ""
    store_limits: StoreLimits = field(default_factory=StoreLimits)
    nats_server_url: str = ""
    stan_config: str = ""
    hb_interval: float = 30.0
    hb_timeout: float = 10.0
    hb_fail_count: int = 10
    ft_group: str = ""
    # nss: FT timings the Go server hard-codes (1 s / 1.25 s, each +-10 %)
    ft_hb_interval: float = 1.0
    ft_hb_missed_interval: float = 1.25
    partitioning: bool = False
    encrypt: bool = False
    encryption_cipher: str = ""
    encryption_key: str = ""
    replace_durable: bool = False
    debug: bool = False
    trace: bool = False
    syslog_name: str = ""
    secure: bool = False
    tls_client_key: str = ""
    tls_client_cert: str = ""
    tls_client_cacert: str = ""
    tls_server_name: str = ""
    tls_skip_verify: bool = False
    username: str = ""
    password: str = ""
    token: str = ""
    credentials: str = ""
    nkey_seed_file: str = ""
    file_options: FileOptions = field(default_factory=FileOptions)
    sql_options: SQLOptions = field(default_factory=SQLOptions)
    cluster: ClusterOptions = field(default_factory=ClusterOptions)
    io_batch_size: int = 1024
    io_sleep_time: int = 0  # microseconds
    # nss additions
    log_json: bool = False


@dataclass
class NATSOptions:
    """Flags of the embedded nats-server (passed through to the child)."""

    host: str = "0.0.0.0"
    port: int = 4222
    server_name: str = ""
    client_advertise: str = ""
    http_port: int = 0
    https_port: int = 0
    config_file: str = ""
    check_config: bool = False
    pid_file: str = ""
    ports_file_dir: str = ""
    log_file: str = ""
    log_size_limit: int = 0
    logtime: bool = True
    logtime_utc: bool = False
    syslog: bool = False
    remote_syslog: str = ""
    debug: bool = False
    trace: bool = False
    trace_verbose: bool = False
    user: str = ""
    password: str = ""
    auth_token: str = ""
    routes: str = ""
    cluster_listen: str = ""
    cluster_advertise: str = ""
    no_advertise: bool = False
    connect_retries: int = 0
    cluster_name: str = ""
    tls: bool = False
    tls_verify: bool = False
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca_cert: str = ""
    max_traced_msg_len: int = 0
    profile: int = 0
    jetstream: bool = False
    store_dir: str = ""
    signal: str = ""
    # nss addition: which nats-server binary to run
    nats_server_bin: str = ""


@dataclass
class Options:
    streaming: StreamingOptions = field(default_factory=StreamingOptions)
    nats: NATSOptions = field(default_factory=NATSOptions)
