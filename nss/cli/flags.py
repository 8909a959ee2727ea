"""The Go server's flags as one table: every name and alias, the kind of
value it takes and the option it sets (a dotted path such as
``streaming.cluster_id``), so parsing is a loop over data and
``ParsedArgs.explicit`` can name what each flag set.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AT_DV",
    "AT_DVV",
    "AT_ENC_KEY",
    "AT_HELP",
    "AT_HELP_TLS",
    "AT_PEERS",
    "AT_SDV",
    "AT_SQL_SCHEMA",
    "AT_VERSION",
    "AT_VV",
    "BOOL",
    "DUR",
    "FLAGS",
    "INT",
    "SIZE",
    "STR",
    "VALID_STORE_TYPES",
    "Flag",
]

STR = "string"
INT = "int"
BOOL = "bool"
DUR = "duration"
SIZE = "size"

# Targets starting with "@" need post-processing instead of a plain
# assignment (they combine several options or depend on other flags).
AT_HELP = "@help"
AT_VERSION = "@version"
AT_HELP_TLS = "@help_tls"
AT_SDV = "@SDV"
AT_DV = "@DV"
AT_VV = "@VV"
AT_DVV = "@DVV"
AT_PEERS = "@cluster_peers"
AT_ENC_KEY = "@encryption_key"
AT_SQL_SCHEMA = "@sql_schema"


@dataclass(frozen=True)
class Flag:
    """A flag's value kind (``STR`` ...) and target: an option path, or an
    ``AT_*`` name for the flags :mod:`nss.cli.parser` applies itself."""

    kind: str
    target: str


def _build_table() -> dict[str, Flag]:
    spec: list[tuple[tuple[str, ...], str, str]] = [
        # --- streaming server
        (("cid", "cluster_id"), STR, "streaming.cluster_id"),
        (("st", "store"), STR, "streaming.store_type"),
        (("dir",), STR, "streaming.file_path"),
        (("mc", "max_channels"), INT, "streaming.store_limits.max_channels"),
        (("msu", "max_subs"), INT, "streaming.store_limits.max_subscriptions"),
        (("mm", "max_msgs"), INT, "streaming.store_limits.max_msgs"),
        (("mb", "max_bytes"), SIZE, "streaming.store_limits.max_bytes"),
        (("ma", "max_age"), DUR, "streaming.store_limits.max_age"),
        (("mi", "max_inactivity"), DUR, "streaming.store_limits.max_inactivity"),
        (("ns", "nats_server"), STR, "streaming.nats_server_url"),
        (("sc", "stan_config"), STR, "streaming.stan_config"),
        (("hbi", "hb_interval"), DUR, "streaming.hb_interval"),
        (("hbt", "hb_timeout"), DUR, "streaming.hb_timeout"),
        (("hbf", "hb_fail_count"), INT, "streaming.hb_fail_count"),
        # ft_group_name is an nss alias: some documentation shows it.
        (("ft_group", "ft_group_name"), STR, "streaming.ft_group"),
        (("ft_hb_interval",), DUR, "streaming.ft_hb_interval"),
        (("ft_hb_missed_interval",), DUR, "streaming.ft_hb_missed_interval"),
        (("encrypt",), BOOL, "streaming.encrypt"),
        (("encryption_cipher",), STR, "streaming.encryption_cipher"),
        (("encryption_key",), STR, AT_ENC_KEY),
        (("replace_durable",), BOOL, "streaming.replace_durable"),
        (("SD", "stan_debug"), BOOL, "streaming.debug"),
        (("SV", "stan_trace"), BOOL, "streaming.trace"),
        (("SDV",), BOOL, AT_SDV),
        (("syslog_name",), STR, "streaming.syslog_name"),
        (("secure",), BOOL, "streaming.secure"),
        (("tls_client_key",), STR, "streaming.tls_client_key"),
        (("tls_client_cert",), STR, "streaming.tls_client_cert"),
        (("tls_client_cacert",), STR, "streaming.tls_client_cacert"),
        (("file_compact_enabled",), BOOL, "streaming.file_options.compact_enabled"),
        (("file_compact_frag",), INT, "streaming.file_options.compact_frag"),
        (("file_compact_interval",), INT, "streaming.file_options.compact_interval"),
        (("file_compact_min_size",), SIZE, "streaming.file_options.compact_min_size"),
        (("file_buffer_size",), SIZE, "streaming.file_options.buffer_size"),
        (("file_crc",), BOOL, "streaming.file_options.do_crc"),
        (("file_crc_poly",), INT, "streaming.file_options.crc_poly"),
        (("file_sync",), BOOL, "streaming.file_options.do_sync"),
        (("file_slice_max_msgs",), INT, "streaming.file_options.slice_max_msgs"),
        (("file_slice_max_bytes",), SIZE, "streaming.file_options.slice_max_bytes"),
        (("file_slice_max_age",), DUR, "streaming.file_options.slice_max_age"),
        (
            ("file_slice_archive_script",),
            STR,
            "streaming.file_options.slice_archive_script",
        ),
        (("file_fds_limit",), INT, "streaming.file_options.fds_limit"),
        (("file_parallel_recovery",), INT, "streaming.file_options.parallel_recovery"),
        (("file_truncate_bad_eof",), BOOL, "streaming.file_options.truncate_bad_eof"),
        (("file_read_buffer_size",), SIZE, "streaming.file_options.read_buffer_size"),
        (("file_auto_sync",), DUR, "streaming.file_options.auto_sync"),
        (("sql_driver",), STR, "streaming.sql_options.driver"),
        (("sql_source",), STR, "streaming.sql_options.source"),
        (("sql_no_caching",), BOOL, "streaming.sql_options.no_caching"),
        (("sql_max_open_conns",), INT, "streaming.sql_options.max_open_conns"),
        (("sql_bulk_insert_limit",), INT, "streaming.sql_options.bulk_insert_limit"),
        (("sql_lock_steal_after",), DUR, "streaming.sql_options.lock_steal_after"),
        # nss: print a shipped schema script and exit (pip users have no sql/ folder)
        (("sql_schema",), STR, AT_SQL_SCHEMA),
        (("clustered",), BOOL, "streaming.cluster.clustered"),
        (("cluster_node_id",), STR, "streaming.cluster.node_id"),
        (("cluster_bootstrap",), BOOL, "streaming.cluster.bootstrap"),
        (("cluster_peers",), STR, AT_PEERS),
        (("cluster_log_path",), STR, "streaming.cluster.log_path"),
        (("cluster_log_cache_size",), INT, "streaming.cluster.log_cache_size"),
        (("cluster_log_snapshots",), INT, "streaming.cluster.log_snapshots"),
        (("cluster_trailing_logs",), INT, "streaming.cluster.trailing_logs"),
        (("cluster_sync",), BOOL, "streaming.cluster.sync"),
        (("cluster_raft_logging",), BOOL, "streaming.cluster.raft_logging"),
        (
            ("cluster_allow_add_remove_node",),
            BOOL,
            "streaming.cluster.allow_add_remove_node",
        ),
        (
            ("cluster_proceed_on_restore_failure",),
            BOOL,
            "streaming.cluster.proceed_on_restore_failure",
        ),
        (("io_batch_size",), INT, "streaming.io_batch_size"),
        (("io_sleep_time",), INT, "streaming.io_sleep_time"),
        # nss additions
        (("log_json",), BOOL, "streaming.log_json"),
        (("nats_server_bin",), STR, "nats.nats_server_bin"),
        # --- embedded NATS server
        (("h", "help"), BOOL, AT_HELP),
        (("v", "version"), BOOL, AT_VERSION),
        (("help_tls",), BOOL, AT_HELP_TLS),
        (("p", "port"), INT, "nats.port"),
        (("n", "name", "server_name"), STR, "nats.server_name"),
        (("a", "addr", "net"), STR, "nats.host"),
        (("client_advertise",), STR, "nats.client_advertise"),
        (("D", "debug"), BOOL, "nats.debug"),
        (("V", "trace"), BOOL, "nats.trace"),
        (("VV",), BOOL, AT_VV),
        (("DV",), BOOL, AT_DV),
        (("DVV",), BOOL, AT_DVV),
        (("T", "logtime"), BOOL, "nats.logtime"),
        (("logtime_utc",), BOOL, "nats.logtime_utc"),
        (("user",), STR, "nats.user"),
        (("pass",), STR, "nats.password"),
        (("auth",), STR, "nats.auth_token"),
        (("m", "http_port"), INT, "nats.http_port"),
        (("ms", "https_port"), INT, "nats.https_port"),
        (("c", "config"), STR, "nats.config_file"),
        (("t",), BOOL, "nats.check_config"),
        (("sl", "signal"), STR, "nats.signal"),
        (("P", "pid"), STR, "nats.pid_file"),
        (("ports_file_dir",), STR, "nats.ports_file_dir"),
        (("l", "log"), STR, "nats.log_file"),
        (("log_size_limit",), INT, "nats.log_size_limit"),
        (("s", "syslog"), BOOL, "nats.syslog"),
        (("r", "remote_syslog"), STR, "nats.remote_syslog"),
        (("profile",), INT, "nats.profile"),
        (("routes",), STR, "nats.routes"),
        (("cluster", "cluster_listen"), STR, "nats.cluster_listen"),
        (("cluster_advertise",), STR, "nats.cluster_advertise"),
        (("no_advertise",), BOOL, "nats.no_advertise"),
        (("connect_retries",), INT, "nats.connect_retries"),
        (("cluster_name",), STR, "nats.cluster_name"),
        (("tls",), BOOL, "nats.tls"),
        (("tlsverify",), BOOL, "nats.tls_verify"),
        (("tlscert",), STR, "nats.tls_cert"),
        (("tlskey",), STR, "nats.tls_key"),
        (("tlscacert",), STR, "nats.tls_ca_cert"),
        (("max_traced_msg_len",), INT, "nats.max_traced_msg_len"),
        (("js", "jetstream"), BOOL, "nats.jetstream"),
        (("sd", "store_dir"), STR, "nats.store_dir"),
    ]
    table: dict[str, Flag] = {}
    for names, kind, target in spec:
        for name in names:
            if name in table:  # pragma: no cover - guards the table itself
                raise AssertionError(f"duplicate flag {name}")
            table[name] = Flag(kind, target)
    return table


FLAGS = _build_table()

VALID_STORE_TYPES = ("MEMORY", "FILE", "SQL")
