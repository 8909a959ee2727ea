"""Map a streaming configuration file onto ``Options`` (config.md §2.2-2.7).

This mirrors the Go server's ``ProcessConfigFile`` (server/conf.go):

* if a top-level key named ``streaming`` (any case) exists, only its map is
  used, otherwise the whole top level;
* keys are case-insensitive and have the Go aliases;
* types are strict, with Go's wording (``parameter "<key>" value is expected
  to be int64, got string``) prefixed by ``file:line:``; durations are
  strings parsed with Go ``time.ParseDuration``;
* per-channel limits: an explicit 0 means unlimited (stored as -1), an
  omitted key inherits (0);
* options given on the command line win: their dotted paths (``explicit``,
  from ``nss.cli.parse_args``) are validated but not assigned, which is what
  Go achieves by parsing the flags again after the files.

Unknown keys: Go ignores them silently, which hides typos in a limits block.
nss reports them (``unknown field "<key>"`` with file:line), raising by
default (``strict=True``) or returning them for the caller to warn about.
Keys that belong to nats-server are never reported when the file has no
``streaming`` block (its top level is then shared with nats-server, and the
contents of its top-level ``tls``/``cluster`` maps may be NATS keys too).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nss.config import ConfigError, Value, go_kind, go_value_str, parse_file_located
from nss.options import ChannelLimits, Options
from nss.stores.limits import go_quote
from nss.subjects import is_channel_name_literal, is_channel_name_valid
from nss.units import parse_duration_ns

__all__ = ["NATS_TOP_LEVEL_KEYS", "UnknownKey", "apply_streaming_config", "streaming_section"]

# Top-level keys of nats-server v2.9.24 (server/opts.go processConfigFileLine).
NATS_TOP_LEVEL_KEYS = frozenset(
    """
    listen client_advertise port server_name host net debug trace trace_verbose
    logtime logtime_utc mappings maps disable_sublist_cache no_sublist_cache
    accounts authorization http https http_port monitor_port https_port
    http_base_path cluster gateway leaf leafnodes store_dir storedir jetstream
    logfile log_file logfile_size_limit log_size_limit syslog remote_syslog
    pidfile pid_file ports_file_dir prof_port max_control_line max_payload
    max_pending max_connections max_conn max_traced_msg_len max_subscriptions
    max_subs max_sub_tokens max_subscription_tokens ping_interval ping_max tls
    ocsp allow_non_tls write_deadline lame_duck_duration lame_duck_grace_period
    operator operators roots root root_operators root_operator resolver
    account_resolver accounts_resolver resolver_tls resolver_preload
    resolver_pinned_accounts no_auth_user system_account system
    no_system_account no_system no_sys_acc no_header_support trusted
    trusted_keys connect_error_reports reconnect_error_reports websocket ws
    mqtt server_tags default_js_domain ocsp_cache
    """.split()
)

_STRING = "string"
_BOOL = "bool"
_INT = "int64"
_SLICE = "slice"
_DURATION = "duration"  # a string holding a Go duration

_STORE_TYPES = ("FILE", "MEMORY", "SQL")


@dataclass(frozen=True)
class UnknownKey:
    """A key nss does not know, with where it was written.

    ``section`` is the dotted path of the enclosing map as written
    (``"streaming.store_limits"``), empty at the top level.
    """

    file: str
    line: int
    key: str
    section: str = ""

    def __str__(self) -> str:
        where = f" in {self.section}" if self.section else ""
        return f"{self.file}:{self.line}: unknown field {go_quote(self.key)}{where}"


def _keys(spec: dict[tuple[str, ...], tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """Expand ``{aliases: (kind, target)}`` to one entry per alias."""
    return {alias: v for aliases, v in spec.items() for alias in aliases}


_S = "streaming."

_TOP = _keys(
    {
        ("id", "cid", "cluster_id"): (_STRING, _S + "cluster_id"),
        ("discover_prefix",): (_STRING, _S + "discover_prefix"),
        ("dir", "datastore"): (_STRING, _S + "file_path"),
        ("sd", "stan_debug"): (_BOOL, _S + "debug"),
        ("sv", "stan_trace"): (_BOOL, _S + "trace"),
        ("ns", "nats_server", "nats_server_url"): (_STRING, _S + "nats_server_url"),
        ("credentials",): (_STRING, _S + "credentials"),
        ("secure",): (_BOOL, _S + "secure"),
        ("hbi", "hb_interval", "server_to_client_hb_interval"): (_DURATION, _S + "hb_interval"),
        ("hbt", "hb_timeout", "server_to_client_hb_timeout"): (_DURATION, _S + "hb_timeout"),
        ("hbf", "hb_fail_count", "server_to_client_hb_fail_count"): (
            _INT,
            _S + "hb_fail_count",
        ),
        ("ft_group", "ft_group_name"): (_STRING, _S + "ft_group"),
        ("ft_hb_interval",): (_DURATION, _S + "ft_hb_interval"),
        ("ft_hb_missed_interval",): (_DURATION, _S + "ft_hb_missed_interval"),
        ("partitioning",): (_BOOL, _S + "partitioning"),
        ("syslog_name",): (_STRING, _S + "syslog_name"),
        ("encrypt",): (_BOOL, _S + "encrypt"),
        ("encryption_cipher",): (_STRING, _S + "encryption_cipher"),
        ("username", "user"): (_STRING, _S + "username"),
        ("password", "pass"): (_STRING, _S + "password"),
        ("token",): (_STRING, _S + "token"),
        ("nkey_seed_file",): (_STRING, _S + "nkey_seed_file"),
        (
            "replace_durable",
            "replace_durables",
            "replace_duplicate_durable",
            "replace_duplicate_durables",
        ): (_BOOL, _S + "replace_durable"),
    }
)

_TLS = _keys(
    {
        ("client_cert",): (_STRING, _S + "tls_client_cert"),
        ("client_key",): (_STRING, _S + "tls_client_key"),
        ("client_ca", "client_cacert"): (_STRING, _S + "tls_client_cacert"),
        ("server_name", "server_hostname"): (_STRING, _S + "tls_server_name"),
        ("skip_verify", "insecure"): (_BOOL, _S + "tls_skip_verify"),
    }
)

_C = _S + "cluster."
# Targets missing from ClusterOptions (raft timeouts, bolt tuning) are
# validated and dropped: clustering is parsed for compatibility only.
_CLUSTER = _keys(
    {
        ("node_id",): (_STRING, _C + "node_id"),
        ("bootstrap",): (_BOOL, _C + "bootstrap"),
        ("peers",): (_SLICE, _C + "peers"),
        ("log_path",): (_STRING, _C + "log_path"),
        ("log_cache_size",): (_INT, _C + "log_cache_size"),
        ("log_snapshots",): (_INT, _C + "log_snapshots"),
        ("trailing_logs",): (_INT, _C + "trailing_logs"),
        ("sync",): (_BOOL, _C + "sync"),
        ("proceed_on_restore_failure",): (_BOOL, _C + "proceed_on_restore_failure"),
        ("allow_add_remove_node",): (_BOOL, _C + "allow_add_remove_node"),
        ("raft_logging",): (_BOOL, _C + "raft_logging"),
        ("raft_heartbeat_timeout",): (_DURATION, _C + "raft_heartbeat_timeout"),
        ("raft_election_timeout",): (_DURATION, _C + "raft_election_timeout"),
        ("raft_lease_timeout",): (_DURATION, _C + "raft_lease_timeout"),
        ("raft_commit_timeout",): (_DURATION, _C + "raft_commit_timeout"),
        ("bolt_free_list_sync",): (_BOOL, _C + "bolt_free_list_sync"),
        ("bolt_free_list_map",): (_BOOL, _C + "bolt_free_list_map"),
        ("nodes_connections",): (_BOOL, _C + "nodes_connections"),
    }
)

_F = _S + "file_options."
_FILE = _keys(
    {
        ("compact", "compact_enabled"): (_BOOL, _F + "compact_enabled"),
        ("compact_frag", "compact_fragmentation"): (_INT, _F + "compact_frag"),
        ("compact_interval",): (_INT, _F + "compact_interval"),
        ("compact_min_size",): (_INT, _F + "compact_min_size"),
        ("buffer_size",): (_INT, _F + "buffer_size"),
        ("crc", "do_crc"): (_BOOL, _F + "do_crc"),
        ("crc_poly",): (_INT, _F + "crc_poly"),
        ("sync", "do_sync", "sync_on_flush"): (_BOOL, _F + "do_sync"),
        ("slice_max_msgs", "slice_max_count", "slice_msgs", "slice_count"): (
            _INT,
            _F + "slice_max_msgs",
        ),
        ("slice_max_bytes", "slice_max_size", "slice_bytes", "slice_size"): (
            _INT,
            _F + "slice_max_bytes",
        ),
        ("slice_max_age", "slice_age", "slice_max_time", "slice_time_limit"): (
            _DURATION,
            _F + "slice_max_age",
        ),
        ("slice_archive_script", "slice_archive", "slice_script"): (
            _STRING,
            _F + "slice_archive_script",
        ),
        ("file_descriptors_limit", "fds_limit"): (_INT, _F + "fds_limit"),
        ("parallel_recovery",): (_INT, _F + "parallel_recovery"),
        ("file_read_buffer_size", "read_buffer_size"): (_INT, _F + "read_buffer_size"),
        ("file_auto_sync", "auto_sync"): (_DURATION, _F + "auto_sync"),
    }
)

_Q = _S + "sql_options."
_SQL = _keys(
    {
        ("driver",): (_STRING, _Q + "driver"),
        ("source",): (_STRING, _Q + "source"),
        ("no_caching",): (_BOOL, _Q + "no_caching"),
        ("max_open_conns", "max_conns"): (_INT, _Q + "max_open_conns"),
        ("bulk_insert_limit",): (_INT, _Q + "bulk_insert_limit"),
        ("lock_steal_after",): (_DURATION, _Q + "lock_steal_after"),
    }
)

# The five channel limits: key aliases -> (kind, ChannelLimits attribute).
_CHANNEL = _keys(
    {
        ("msu", "max_subs", "max_subscriptions", "maxsubscriptions"): (
            _INT,
            "max_subscriptions",
        ),
        ("mm", "max_msgs", "maxmsgs", "max_count", "maxcount"): (_INT, "max_msgs"),
        ("mb", "max_bytes", "maxbytes"): (_INT, "max_bytes"),
        ("ma", "max_age", "maxage"): (_DURATION, "max_age"),
        ("mi", "max_inactivity", "maxinactivity"): (_DURATION, "max_inactivity"),
    }
)
_MAX_CHANNELS = ("mc", "max_channels", "maxchannels")
_PER_CHANNEL = (
    "channels",
    "channels_limits",
    "channelslimits",
    "per_channel",
    "per_channel_limits",
)
_SL = _S + "store_limits."


# ---------------------------------------------------------------------------
# Go value semantics


def go_duration_seconds(text: str) -> float:
    """``time.ParseDuration`` in float seconds; ``ValueError`` carries Go's
    error text (``time: invalid duration "x"`` ...)."""
    try:
        return parse_duration_ns(text) / 1e9
    except ValueError as exc:
        msg = str(exc)
    if msg.startswith("missing unit"):
        raise ValueError(f"time: missing unit in duration {go_quote(text)}") from None
    if msg.startswith("unknown unit"):
        body = text.lstrip("+-")
        for m in re.finditer(r"[0-9.]+([^0-9.]*)", body):
            unit = m.group(1)
            if unit and unit not in ("ns", "us", "\u00b5s", "\u03bcs", "ms", "s", "m", "h"):
                raise ValueError(
                    f"time: unknown unit {go_quote(unit)} in duration {go_quote(text)}"
                ) from None
    raise ValueError(f"time: invalid duration {go_quote(text)}") from None


# ---------------------------------------------------------------------------
# Applying


def streaming_section(top: dict[str, Value]) -> tuple[dict[str, Value], bool]:
    """The map streaming options are read from, and whether it is a
    ``streaming`` block (vs the whole top level)."""
    section: Value | None = None
    for k, v in top.items():
        if k.lower() == "streaming":
            section = v
    if section is None:
        return top, False
    if not isinstance(section.value, dict):
        raise _err(
            section, f"expected streaming section to be a map/struct, got {go_value_str(section)}"
        )
    return section.value, True


def _err(v: Value, message: str) -> ConfigError:
    return ConfigError(f"{v.where}: {message}", v.file, v.line)


class _Applier:
    def __init__(self, opts: Options, explicit: set[str], strict: bool, in_block: bool) -> None:
        self.opts = opts
        self.explicit = explicit
        self.strict = strict
        self.in_block = in_block
        self.unknown: list[UnknownKey] = []
        self.channels_at: Value | None = None

    # -- helpers -------------------------------------------------------------

    def assign(self, path: str, value: Any) -> None:
        """Set the option at dotted ``path`` unless a flag set it.  Paths
        whose attribute ``Options`` does not have are dropped."""
        if path in self.explicit:
            return
        obj: Any = self.opts
        *parents, last = path.split(".")
        for attr in parents:
            obj = getattr(obj, attr)
        if hasattr(obj, last):
            setattr(obj, last, value)

    def typed(self, key: str, kind: str, v: Value) -> Any:
        """Check ``v`` against ``kind`` (Go ``checkType``) and convert."""
        want = _STRING if kind == _DURATION else kind
        got = go_kind(v.value)
        if got != want:
            raise _err(v, f"parameter {go_quote(key)} value is expected to be {want}, got {got}")
        if kind == _DURATION:
            try:
                return go_duration_seconds(v.value)
            except ValueError as exc:
                raise _err(v, str(exc)) from None
        if kind == _SLICE:
            out: list[str] = []
            for item in v.value:
                if not isinstance(item.value, str):
                    raise _err(
                        item,
                        f"parameter {go_quote(key)} element is expected to be string, "
                        f"got {go_kind(item.value)}",
                    )
                out.append(item.value)
            return out
        return v.value

    def section(self, v: Value, what: str) -> dict[str, Value]:
        if not isinstance(v.value, dict):
            raise _err(v, f"expected {what} to be a map/struct, got {go_value_str(v)}")
        return v.value

    def unknown_key(self, key: str, v: Value, section: str, ignorable: bool = False) -> None:
        """Record or raise for an unknown key.  Variable definitions and
        (``ignorable``) keys that belong to nats-server are skipped."""
        if v.used or ignorable:
            return
        uk = UnknownKey(v.file, v.line, key, section)
        if self.strict:
            raise ConfigError(str(uk), v.file, v.line)
        self.unknown.append(uk)

    def table(
        self,
        m: dict[str, Value],
        table: dict[str, tuple[str, str]],
        section: str,
        name_in_errors: Callable[[str], str] = lambda k: k,
        ignore_unknown: bool = False,
    ) -> None:
        for k, v in m.items():
            entry = table.get(k.lower())
            if entry is None:
                self.unknown_key(k, v, section, ignore_unknown)
                continue
            kind, path = entry
            self.assign(path, self.typed(name_in_errors(k), kind, v))

    # -- sections --------------------------------------------------------------

    def top(self, m: dict[str, Value], section: str) -> None:
        prefix = f"{section}." if section else ""
        for k, v in m.items():
            name = k.lower()
            entry = _TOP.get(name)
            if entry is not None:
                kind, path = entry
                self.assign(path, self.typed(k, kind, v))
            elif name in ("st", "store_type", "store", "storetype"):
                st = self.typed(k, _STRING, v)
                if st.upper() not in _STORE_TYPES:
                    raise _err(v, f"unknown store type: {st}")
                self.assign(_S + "store_type", st.upper())
            elif name == "encryption_key":
                key = self.typed(k, _STRING, v)
                self.assign(_S + "encrypt", True)
                self.assign(_S + "encryption_key", key)
            elif name == "tls":
                # Without a streaming block this may be nats-server's tls map.
                self.table(
                    self.section(v, "TLS"), _TLS, prefix + k, ignore_unknown=not self.in_block
                )
            elif name == "cluster":
                sec = self.section(v, "cluster")
                self.assign(_C + "clustered", True)
                self.table(sec, _CLUSTER, prefix + k, ignore_unknown=not self.in_block)
            elif name in ("limits", "store_limits", "storelimits"):
                self.store_limits(self.section(v, "store limits"), prefix + k)
            elif name in ("file", "file_options"):
                self.table(self.section(v, "file options"), _FILE, prefix + k)
            elif name in ("sql", "sql_options"):
                # Go names SQL keys lower-cased in its type errors.
                self.table(self.section(v, "SQL options"), _SQL, prefix + k, str.lower)
            else:
                self.unknown_key(k, v, section, not self.in_block and name in NATS_TOP_LEVEL_KEYS)

    def store_limits(self, m: dict[str, Value], section: str) -> None:
        for k, v in m.items():
            name = k.lower()
            if name in _MAX_CHANNELS:
                self.assign(_SL + "max_channels", self.typed(k, _INT, v))
            elif name in _PER_CHANNEL:
                self.per_channel(v, f"{section}.{k}")
            elif name in _CHANNEL:
                kind, attr = _CHANNEL[name]
                self.assign(_SL + attr, self.typed(k, kind, v))
            else:
                self.unknown_key(k, v, section)

    def per_channel(self, v: Value, section: str) -> None:
        channels = self.section(v, "per channel limits")
        self.channels_at = v
        per_channel = self.opts.streaming.store_limits.per_channel
        for channel, lv in channels.items():
            limits_map = self.section(lv, "channel limits")
            if not is_channel_name_valid(channel, True):
                raise _err(lv, f"invalid channel name {go_quote(channel)}")
            cl = ChannelLimits()
            for k, item in limits_map.items():
                entry = _CHANNEL.get(k.lower())
                if entry is None:
                    self.unknown_key(k, item, f"{section}.{channel}")
                    continue
                kind, attr = entry
                value = self.typed(k, kind, item)
                # Per channel, an explicit 0 means unlimited (0 = inherit).
                if value == 0:
                    value = -1.0 if kind == _DURATION else -1
                setattr(cl, attr, value)
            per_channel.pop(channel, None)
            per_channel[channel] = cl

    def check_channel_count(self) -> None:
        """Literal per-channel entries may not exceed max_channels (> 0)."""
        if self.channels_at is None:
            return
        sl = self.opts.streaming.store_limits
        literals = sum(1 for n in sl.per_channel if is_channel_name_literal(n))
        if sl.max_channels > 0 and literals > sl.max_channels:
            raise _err(
                self.channels_at,
                f"too many channels defined ({sl.max_channels + 1}). "
                f"The max channels limit is set to {sl.max_channels}",
            )


def apply_streaming_config(
    opts: Options, path: str, explicit: set[str], *, strict: bool = True
) -> list[UnknownKey]:
    """Read streaming options from the configuration file ``path`` into
    ``opts`` (in place).

    ``explicit`` holds the dotted option paths set on the command line
    (``ParsedArgs.explicit``); those options keep their value, although
    the file's values for them are still type-checked, as in Go.

    Unknown keys (in the ``streaming`` block, in the streaming sections such
    as ``store_limits``, or top-level keys nats-server does not know either)
    raise ``ConfigError`` when ``strict``; otherwise they are returned so
    the caller can warn.  Any other problem raises ``ConfigError`` whose
    text starts with ``file:line:``.
    """
    top = parse_file_located(path)
    section, in_block = streaming_section(top)
    applier = _Applier(opts, explicit, strict, in_block)
    block_name = next((k for k in top if k.lower() == "streaming"), "") if in_block else ""
    applier.top(section, block_name)
    applier.check_channel_count()
    return applier.unknown


def nats_config(path: str, *, drop_monitor: bool = False) -> dict[str, Any]:
    """The NATS part of a configuration file, for the nats-server child.

    The Go binary hands one file to both parsers and its NATS parser ignores
    streaming keys; a standalone nats-server rejects them ("unknown field"),
    so the child gets a copy holding only the keys nats-server knows (JSON is
    valid NATS configuration syntax; includes and variables are resolved).
    ``drop_monitor`` leaves out the monitoring keys, for when nss serves
    that port itself (NATS and streaming endpoints together)."""
    from nss.config import parse_file

    return {
        k: v
        for k, v in parse_file(path).items()
        if k.lower() in NATS_TOP_LEVEL_KEYS
        and not (drop_monitor and k.lower() in _MONITOR_KEYS)
    }


def nats_authorization(path: str) -> tuple[str, str, str]:
    """``(user, password, token)`` of the file's top-level ``authorization``
    block: the Go server's own NATS connections use them (they are its
    ``natsOpts.Username``/``Password``/``Authorization``), so an embedded
    server that requires them accepts the streaming server too."""
    from nss.config import parse_file

    user = password = token = ""
    for k, v in parse_file(path).items():
        if k.lower() != "authorization" or not isinstance(v, dict):
            continue
        for ak, av in v.items():
            name = ak.lower()
            if not isinstance(av, str):
                continue
            if name in ("user", "username"):
                user = av
            elif name in ("pass", "password"):
                password = av
            elif name == "token":
                token = av
    return user, password, token


# Monitoring keys of a NATS config: nss serves that port itself (NATS and
# streaming endpoints together), so they are taken out of the child's copy.
_MONITOR_KEYS = {
    "http": "http",
    "http_port": "http",
    "monitor_port": "http",
    "https": "https",
    "https_port": "https",
}


def monitor_ports(path: str) -> dict[str, int]:
    """``{"http": port}`` / ``{"https": port}`` set by a NATS config file
    (``http: 8222``, ``http: "0.0.0.0:8222"``, ``http_port``, ...)."""
    from nss.config import parse_file

    out: dict[str, int] = {}
    for k, v in parse_file(path).items():
        kind = _MONITOR_KEYS.get(k.lower())
        if kind is None:
            continue
        text = str(v)
        port = text.rsplit(":", 1)[-1]
        try:
            out[kind] = int(port)
        except ValueError as e:
            raise ConfigError(f"{path}: invalid {k} value {text!r}") from e
    return out
