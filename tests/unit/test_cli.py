"""Command line compatibility with nats-streaming-server v0.25.6 (config.md §1)."""

from __future__ import annotations

import io
import subprocess
import sys
from typing import Any

import pytest

import nss
from nss import cli
from nss.cli import UsageError, check_supported, parse_args
from nss.options import Options


def get(opts: Options, path: str) -> Any:
    obj: Any = opts
    for attr in path.split("."):
        obj = getattr(obj, attr)
    return obj


def opts_of(*argv: str) -> Options:
    return parse_args(list(argv)).options


# ---------------------------------------------------------------------------
# Every flag, every alias

# (flag names, value given, option path, expected value)
STRING_FLAGS = [
    (("cid", "cluster_id"), "my-cluster", "streaming.cluster_id", "my-cluster"),
    (("dir",), "/data/stan", "streaming.file_path", "/data/stan"),
    (
        ("ns", "nats_server"),
        "nats://a:4222,nats://b:4222",
        "streaming.nats_server_url",
        None,
    ),
    (("sc", "stan_config"), "/etc/stan.conf", "streaming.stan_config", None),
    (("ft_group", "ft_group_name"), "grp", "streaming.ft_group", None),
    (("encryption_cipher",), "AES", "streaming.encryption_cipher", None),
    (("syslog_name",), "stan", "streaming.syslog_name", None),
    (("tls_client_key",), "k.pem", "streaming.tls_client_key", None),
    (("tls_client_cert",), "c.pem", "streaming.tls_client_cert", None),
    (("tls_client_cacert",), "ca.pem", "streaming.tls_client_cacert", None),
    (
        ("file_slice_archive_script",),
        "/bin/arch.sh",
        "streaming.file_options.slice_archive_script",
        None,
    ),
    (("sql_driver",), "postgres", "streaming.sql_options.driver", None),
    (("sql_source",), "dbname=x", "streaming.sql_options.source", None),
    (("cluster_node_id",), "a", "streaming.cluster.node_id", None),
    (("cluster_log_path",), "/raft", "streaming.cluster.log_path", None),
    (("nats_server_bin",), "/opt/nats-server", "nats.nats_server_bin", None),
    (("n", "name", "server_name"), "srv1", "nats.server_name", None),
    (("a", "addr", "net"), "127.0.0.1", "nats.host", None),
    (("client_advertise",), "x:1", "nats.client_advertise", None),
    (("user",), "bob", "nats.user", None),
    (("pass",), "s3cret", "nats.password", None),
    (("auth",), "tok", "nats.auth_token", None),
    (("c", "config"), "n.conf", "nats.config_file", None),
    (("sl", "signal"), "reopen=123", "nats.signal", None),
    (("P", "pid"), "/run/x.pid", "nats.pid_file", None),
    (("ports_file_dir",), "/run", "nats.ports_file_dir", None),
    (("l", "log"), "/var/log/x.log", "nats.log_file", None),
    (("r", "remote_syslog"), "udp://127.0.0.1:514", "nats.remote_syslog", None),
    (("routes",), "nats://h:6222", "nats.routes", None),
    (("cluster", "cluster_listen"), "nats://0.0.0.0:6222", "nats.cluster_listen", None),
    (("cluster_advertise",), "h:6222", "nats.cluster_advertise", None),
    (("cluster_name",), "C", "nats.cluster_name", None),
    (("tlscert",), "s.pem", "nats.tls_cert", None),
    (("tlskey",), "s.key", "nats.tls_key", None),
    (("tlscacert",), "ca.pem", "nats.tls_ca_cert", None),
    (("sd", "store_dir"), "/js", "nats.store_dir", None),
]

INT_FLAGS = [
    (("mc", "max_channels"), "streaming.store_limits.max_channels"),
    (("msu", "max_subs"), "streaming.store_limits.max_subscriptions"),
    (("mm", "max_msgs"), "streaming.store_limits.max_msgs"),
    (("hbf", "hb_fail_count"), "streaming.hb_fail_count"),
    (("file_compact_frag",), "streaming.file_options.compact_frag"),
    (("file_compact_interval",), "streaming.file_options.compact_interval"),
    (("file_crc_poly",), "streaming.file_options.crc_poly"),
    (("file_slice_max_msgs",), "streaming.file_options.slice_max_msgs"),
    (("file_fds_limit",), "streaming.file_options.fds_limit"),
    (("file_parallel_recovery",), "streaming.file_options.parallel_recovery"),
    (("sql_max_open_conns",), "streaming.sql_options.max_open_conns"),
    (("sql_bulk_insert_limit",), "streaming.sql_options.bulk_insert_limit"),
    (("cluster_log_cache_size",), "streaming.cluster.log_cache_size"),
    (("cluster_log_snapshots",), "streaming.cluster.log_snapshots"),
    (("cluster_trailing_logs",), "streaming.cluster.trailing_logs"),
    (("io_batch_size",), "streaming.io_batch_size"),
    (("io_sleep_time",), "streaming.io_sleep_time"),
    (("p", "port"), "nats.port"),
    (("m", "http_port"), "nats.http_port"),
    (("ms", "https_port"), "nats.https_port"),
    (("log_size_limit",), "nats.log_size_limit"),
    (("profile",), "nats.profile"),
    (("connect_retries",), "nats.connect_retries"),
    (("max_traced_msg_len",), "nats.max_traced_msg_len"),
]

# (names, path, default)
BOOL_FLAGS = [
    (("encrypt",), "streaming.encrypt", False),
    (("replace_durable",), "streaming.replace_durable", False),
    (("SD", "stan_debug"), "streaming.debug", False),
    (("SV", "stan_trace"), "streaming.trace", False),
    (("secure",), "streaming.secure", False),
    (("file_compact_enabled",), "streaming.file_options.compact_enabled", True),
    (("file_crc",), "streaming.file_options.do_crc", True),
    (("file_sync",), "streaming.file_options.do_sync", True),
    (("file_truncate_bad_eof",), "streaming.file_options.truncate_bad_eof", False),
    (("sql_no_caching",), "streaming.sql_options.no_caching", False),
    (("clustered",), "streaming.cluster.clustered", False),
    (("cluster_bootstrap",), "streaming.cluster.bootstrap", False),
    (("cluster_sync",), "streaming.cluster.sync", False),
    (("cluster_raft_logging",), "streaming.cluster.raft_logging", False),
    (
        ("cluster_allow_add_remove_node",),
        "streaming.cluster.allow_add_remove_node",
        False,
    ),
    (
        ("cluster_proceed_on_restore_failure",),
        "streaming.cluster.proceed_on_restore_failure",
        False,
    ),
    (("log_json",), "streaming.log_json", False),
    (("D", "debug"), "nats.debug", False),
    (("V", "trace"), "nats.trace", False),
    (("T", "logtime"), "nats.logtime", True),
    (("logtime_utc",), "nats.logtime_utc", False),
    (("t",), "nats.check_config", False),
    (("s", "syslog"), "nats.syslog", False),
    (("no_advertise",), "nats.no_advertise", False),
    (("tls",), "nats.tls", False),
    (("tlsverify",), "nats.tls_verify", False),
    (("js", "jetstream"), "nats.jetstream", False),
]

DURATION_FLAGS = [
    (("ma", "max_age"), "streaming.store_limits.max_age"),
    (("mi", "max_inactivity"), "streaming.store_limits.max_inactivity"),
    (("hbi", "hb_interval"), "streaming.hb_interval"),
    (("hbt", "hb_timeout"), "streaming.hb_timeout"),
    (("file_slice_max_age",), "streaming.file_options.slice_max_age"),
    (("file_auto_sync",), "streaming.file_options.auto_sync"),
]

SIZE_FLAGS = [
    (("mb", "max_bytes"), "streaming.store_limits.max_bytes"),
    (("file_compact_min_size",), "streaming.file_options.compact_min_size"),
    (("file_buffer_size",), "streaming.file_options.buffer_size"),
    (("file_read_buffer_size",), "streaming.file_options.read_buffer_size"),
    (("file_slice_max_bytes",), "streaming.file_options.slice_max_bytes"),
]


def _forms(name: str, value: str) -> list[list[str]]:
    return [
        [f"-{name}", value],
        [f"-{name}={value}"],
        [f"--{name}", value],
        [f"--{name}={value}"],
    ]


def _expand(table: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    out = []
    for row in table:
        for name in row[0]:
            out.append((name, *row[1:]))
    return out


@pytest.mark.parametrize(("name", "value", "path", "expected"), _expand(STRING_FLAGS))
def test_string_flags(name: str, value: str, path: str, expected: str | None) -> None:
    for argv in _forms(name, value):
        parsed = parse_args(argv)
        assert get(parsed.options, path) == (expected or value), argv
        assert path in parsed.explicit
        assert parsed.action == "run"


@pytest.mark.parametrize(("name", "path"), _expand(INT_FLAGS))
def test_int_flags(name: str, path: str) -> None:
    for argv in _forms(name, "42"):
        assert get(opts_of(*argv), path) == 42, argv
    # Go integer syntax (base 0)
    assert get(opts_of(f"-{name}", "0x10"), path) == 16
    assert get(opts_of(f"-{name}=-3"), path) == -3
    with pytest.raises(
        UsageError, match=f'invalid value "x" for flag -{name}: parse error'
    ):
        parse_args([f"-{name}", "x"])


@pytest.mark.parametrize(("name", "path", "default"), _expand(BOOL_FLAGS))
def test_bool_flags(name: str, path: str, default: bool) -> None:
    assert get(Options(), path) is default
    assert get(opts_of(f"-{name}"), path) is True
    assert get(opts_of(f"--{name}"), path) is True
    for false in ("false", "0", "f", "F", "FALSE", "False"):
        assert get(opts_of(f"-{name}={false}"), path) is False
        assert get(opts_of(f"--{name}={false}"), path) is False
    for true in ("true", "1", "t", "T", "TRUE", "True"):
        assert get(opts_of(f"-{name}=false", f"--{name}={true}"), path) is True
    assert path in parse_args([f"-{name}=false"]).explicit
    with pytest.raises(
        UsageError, match=f'invalid boolean value "yes" for -{name}: parse error'
    ):
        parse_args([f"-{name}=yes"])


@pytest.mark.parametrize(("name", "path"), _expand(DURATION_FLAGS))
def test_duration_flags(name: str, path: str) -> None:
    for argv in _forms(name, "1h30m"):
        assert get(opts_of(*argv), path) == 5400.0, argv
    assert get(opts_of(f"-{name}", "250ms"), path) == pytest.approx(0.25)
    assert get(opts_of(f"-{name}=0"), path) == 0.0
    for bad in ("1d", "10", "abc", ""):
        with pytest.raises(UsageError, match=f"for flag -{name}: parse error"):
            parse_args([f"-{name}={bad}"])


@pytest.mark.parametrize(("name", "path"), _expand(SIZE_FLAGS))
def test_size_flags(name: str, path: str) -> None:
    for argv in _forms(name, "10MB"):
        assert get(opts_of(*argv), path) == 10 * 1024 * 1024, argv
    assert get(opts_of(f"-{name}", "1234"), path) == 1234
    assert get(opts_of(f"-{name}", "2k"), path) == 2000
    assert get(opts_of(f"-{name}", "1GiB"), path) == 1024**3
    assert path in parse_args([f"-{name}", "1"]).explicit
    with pytest.raises(UsageError) as exc:
        parse_args([f"-{name}", "xyz"])
    assert str(exc.value) == f"-{name} should be a size, got 'xyz'"


def test_defaults_untouched_without_flags() -> None:
    parsed = parse_args([])
    assert parsed.options == Options()
    assert parsed.action == "run"
    assert parsed.explicit == set()
    assert parsed.args == []


def test_store_type_normalised() -> None:
    assert opts_of("-st", "file").streaming.store_type == "FILE"
    assert opts_of("--store=Sql").streaming.store_type == "SQL"
    assert opts_of("--store", "memory").streaming.store_type == "MEMORY"
    # invalid values are kept verbatim for the error message
    assert opts_of("--store", "bolt").streaming.store_type == "bolt"


# ---------------------------------------------------------------------------
# Combined / special flags


def test_sdv_sets_both_and_false_clears_both() -> None:
    o = opts_of("-SDV").streaming
    assert o.debug and o.trace
    o = opts_of("-SD", "-SV", "-SDV=false").streaming
    assert not o.debug and not o.trace
    # -SDV decides whatever the order, like Go (applied after parsing)
    o = opts_of("-SDV=false", "-SV").streaming
    assert not o.debug and not o.trace
    parsed = parse_args(["-SDV=false"])
    assert {"streaming.debug", "streaming.trace"} <= parsed.explicit
    assert opts_of("-SD").streaming.trace is False
    assert opts_of("-SV").streaming.debug is False


def test_nats_combined_levels() -> None:
    n = opts_of("-DV").nats
    assert n.debug and n.trace and not n.trace_verbose
    n = opts_of("-VV").nats
    assert n.trace and n.trace_verbose and not n.debug
    n = opts_of("-DVV").nats
    assert n.debug and n.trace and n.trace_verbose
    # They only switch on: =false is a no-op (not recorded as explicit)
    parsed = parse_args(["-D", "-DV=false"])
    assert parsed.options.nats.debug is True
    assert parsed.options.nats.trace is False
    assert "nats.trace" not in parsed.explicit


def test_case_sensitive_names() -> None:
    assert opts_of("-SD").streaming.debug is True
    assert opts_of("-SD").nats.store_dir == ""
    assert opts_of("-sd", "/x").nats.store_dir == "/x"
    assert opts_of("-sd", "/x").streaming.debug is False
    assert opts_of("-V").nats.trace is True
    assert parse_args(["-v"]).action == "version"
    assert opts_of("-m", "8222").nats.http_port == 8222
    assert opts_of("-ms", "8443").nats.https_port == 8443
    lim = opts_of(
        "-msu", "1", "-mm", "2", "-mb", "3", "-mc", "4"
    ).streaming.store_limits
    assert (lim.max_subscriptions, lim.max_msgs, lim.max_bytes, lim.max_channels) == (
        1,
        2,
        3,
        4,
    )
    assert opts_of("-P", "/p").nats.pid_file == "/p"
    assert opts_of("-p", "5").nats.port == 5
    for wrong in ("-sdv", "-Sd", "-CID", "-Port", "-H"):
        with pytest.raises(UsageError, match="flag provided but not defined"):
            parse_args([wrong, "x"])


def test_encryption_key_turns_encryption_on() -> None:
    o = opts_of("--encryption_key", "k3y").streaming
    assert o.encryption_key == "k3y"
    assert o.encrypt is True
    o = opts_of("--encryption_key=").streaming
    assert o.encrypt is False


def test_cluster_peers_split_and_own_id_removed() -> None:
    o = opts_of(
        "--cluster_peers", "a, b ,c", "--cluster_node_id", "b"
    ).streaming.cluster
    assert o.peers == ["a", "c"]
    assert opts_of("--cluster_peers=x").streaming.cluster.peers == ["x"]


def test_negative_port_value_is_consumed() -> None:
    # A non-bool flag takes the next argument even if it starts with '-'
    o = opts_of("-p", "-1", "-a", "127.0.0.1")
    assert o.nats.port == -1
    assert o.nats.host == "127.0.0.1"


def test_last_occurrence_wins() -> None:
    assert opts_of("-p", "1", "--port=2", "-p", "3").nats.port == 3
    assert opts_of("-cid", "a", "--cluster_id", "b").streaming.cluster_id == "b"


def test_test_suite_command_lines() -> None:
    """Command lines used by the stan.js and stan.py suites (README §29)."""
    o = opts_of(
        "-p", "4223", "-SDV", "-log", "/tmp/s.log", "--store", "FILE", "--dir", "/d"
    )
    assert o.nats.port == 4223
    assert o.streaming.debug and o.streaming.trace
    assert o.nats.log_file == "/tmp/s.log"
    assert (o.streaming.store_type, o.streaming.file_path) == ("FILE", "/d")
    o = opts_of(
        "-p", "4222", "-m", "8222", "-a", "127.0.0.1", "--user", "u", "--pass", "p",
        "-SDV", "-DV", "--cluster_listen", "nats://127.0.0.1:6222",
        "--routes", "nats://127.0.0.1:6223",
    )  # fmt: skip
    assert (o.nats.http_port, o.nats.host, o.nats.user, o.nats.password) == (
        8222,
        "127.0.0.1",
        "u",
        "p",
    )
    assert o.nats.debug and o.nats.trace
    assert o.nats.cluster_listen == "nats://127.0.0.1:6222"
    assert o.nats.routes == "nats://127.0.0.1:6223"


# ---------------------------------------------------------------------------
# Syntax: positional arguments, terminators, errors


def test_bool_does_not_consume_next_argument() -> None:
    with pytest.raises(UsageError) as exc:
        parse_args(["-file_sync", "false"])
    assert str(exc.value) == 'unrecognized command: "false"'


def test_parsing_stops_at_first_non_flag() -> None:
    # "-p 5" after the positional is never parsed
    with pytest.raises(UsageError, match='unrecognized command: "run"'):
        parse_args(["-p", "4", "run", "-p", "5"])


@pytest.mark.parametrize("word", ["version", "VERSION", "Version"])
def test_positional_version(word: str) -> None:
    parsed = parse_args(["-p", "1", word])
    assert parsed.action == "version"
    assert parsed.args == [word]


@pytest.mark.parametrize("word", ["help", "HELP", "Help"])
def test_positional_help(word: str) -> None:
    assert parse_args([word]).action == "help"


def test_double_dash_ends_flags() -> None:
    parsed = parse_args(["-p", "7", "--"])
    assert parsed.action == "run"
    assert parsed.options.nats.port == 7
    assert parse_args(["--", "help"]).action == "help"
    with pytest.raises(UsageError, match='unrecognized command: "-p"'):
        parse_args(["--", "-p", "1"])


def test_single_dash_and_empty_are_positional() -> None:
    with pytest.raises(UsageError, match='unrecognized command: "-"'):
        parse_args(["-"])
    with pytest.raises(UsageError, match='unrecognized command: ""'):
        parse_args([""])


@pytest.mark.parametrize(
    ("argv", "action"),
    [
        (["-h"], "help"),
        (["--help"], "help"),
        (["-help"], "help"),
        (["-v"], "version"),
        (["--version"], "version"),
        (["--help_tls"], "help_tls"),
        (["-h", "-v"], "version"),  # version first, as in nats-server
        (["-v", "bogus"], "version"),  # flags win over a bad positional
        (["-h=false"], "run"),
    ],
)
def test_action_flags(argv: list[str], action: str) -> None:
    assert parse_args(argv).action == action


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-foo"], "flag provided but not defined: -foo"),
        (["--foo=bar"], "flag provided but not defined: -foo"),
        (["-ft_groupx", "a"], "flag provided but not defined: -ft_groupx"),
        (["---p", "1"], "bad flag syntax: ---p"),
        (["-=1"], "bad flag syntax: -=1"),
        (["--=1"], "bad flag syntax: --=1"),
        (["-p"], "flag needs an argument: -p"),
        (["--cluster_id"], "flag needs an argument: -cluster_id"),
        (["-p", "x"], 'invalid value "x" for flag -p: parse error'),
        (["--port=1.5"], 'invalid value "1.5" for flag -port: parse error'),
        (["-p="], 'invalid value "" for flag -p: parse error'),
        (["-p", " 1"], 'invalid value " 1" for flag -p: parse error'),
        (["-p", "99999999999999999999"], "value out of range"),
        (["-hbi", "5"], 'invalid value "5" for flag -hbi: parse error'),
        (["-SD=maybe"], 'invalid boolean value "maybe" for -SD: parse error'),
        (["-SD="], 'invalid boolean value "" for -SD: parse error'),
        (["-mb", "xyz"], "-mb should be a size, got 'xyz'"),
        (["--max_bytes=1.5"], "-max_bytes should be a size, got '1.5'"),
        (["-mb", "10XB"], "-mb should be a size, got '10XB'"),
        (["bogus"], 'unrecognized command: "bogus"'),
        (["-p", "1", 'we"ird'], 'unrecognized command: "we\\"ird"'),
    ],
)
def test_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError) as exc:
        parse_args(argv)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_parse_error_reported_before_help() -> None:
    with pytest.raises(UsageError):
        parse_args(["-h", "-p", "x"])


def test_go_integer_syntax() -> None:
    assert opts_of("-p", "017").nats.port == 15  # leading 0 is octal in Go
    assert opts_of("-p", "0o17").nats.port == 15
    assert opts_of("-p", "0b11").nats.port == 3
    assert opts_of("-p", "+5").nats.port == 5
    assert opts_of("-mm", "1_000").streaming.store_limits.max_msgs == 1000
    with pytest.raises(UsageError):
        parse_args(["-p", "08"])
    with pytest.raises(UsageError):
        parse_args(["-p", "--5"])


def test_explicit_uses_canonical_paths() -> None:
    parsed = parse_args(["-cid", "a", "--mm=5", "-p", "1", "-ma", "1s", "-mb", "1KB"])
    assert parsed.explicit == {
        "streaming.cluster_id",
        "streaming.store_limits.max_msgs",
        "nats.port",
        "streaming.store_limits.max_age",
        "streaming.store_limits.max_bytes",
    }


# ---------------------------------------------------------------------------
# check_supported


def _check(*argv: str) -> None:
    check_supported(parse_args(list(argv)).options)


def test_check_supported_accepts_defaults() -> None:
    check_supported(Options())
    _check("-c", "nats.conf", "-sc", "stan.conf")
    _check("--store", "FILE", "--dir", "/x")
    _check("-p", "-1", "-SDV", "--cluster", "nats://h:1", "--routes", "nats://h:2")
    _check("-mc", "0", "-msu", "0", "-mm", "0", "-mb", "0", "-ma", "0", "-mi", "0")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--store", "file"], "for FILE stores, root directory must be specified"),
        (["--store", "sql"], "for SQL stores, --sql_driver and --sql_source must be specified"),
        (["--store", "bolt"], "unsupported store type: bolt"),
        (["--ft_group", "g"], "ft: only FILE or SQL stores supported in FT mode"),
        (["--ft_group_name", "g"], "ft: only FILE or SQL stores supported in FT mode"),
        (["--clustered"], "not supported"),
        (["--encrypt"], "encryption key required"),
        (
            ["--encryption_key", "k", "--encryption_cipher", "DES"],
            "encryption cipher not supported",
        ),
        (
            ["--routes", "nats://h:1"],
            "solicited routes require cluster capabilities, e.g. --cluster",
        ),
        (["-mc", "-1"], "max channels limit cannot be negative (-1)"),
        (["-msu", "-2"], "max subscriptions limit cannot be negative (-2)"),
        (["-mm", "-3"], "max messages limit cannot be negative (-3)"),
        (["-mb", "-4"], "max bytes limit cannot be negative (-4)"),
        (["-ma", "-1s"], "max age limit cannot be negative (-1s)"),
        (["-mi", "-1h30m"], "max inactivity limit cannot be negative (-1h30m0s)"),
    ],
)
def test_check_supported_rejects(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError) as exc:
        _check(*argv)
    assert message in str(exc.value)


def test_clustered_refusal_points_to_migration_and_ft() -> None:
    """A Go clustered user learns where to go: nss-migrate for the node's
    data (with its Raft log), then an FT group on shared FILE storage or on
    PostgreSQL with a synchronous standby."""
    with pytest.raises(UsageError) as exc:
        _check("--clustered")
    text = str(exc.value)
    for part in ("nss-migrate", "--raft-log", "--ft_group", "PostgreSQL", "synchronous standby"):
        assert part in text, part


def test_check_supported_partitioning() -> None:
    opts = Options()
    opts.streaming.partitioning = True
    check_supported(opts)


# ---------------------------------------------------------------------------
# Texts and the entry point helper


def test_usage_sections_and_flags() -> None:
    text = cli.usage()
    for section in (
        "Streaming Server Options:",
        "Streaming Server Clustering Options:",
        "Streaming Server File Store Options:",
        "Streaming Server SQL Store Options:",
        "Streaming Server TLS Options:",
        "Streaming Server Logging Options:",
        "NATS Server Options:",
        "Logging Options:",
        "Authorization Options:",
        "TLS Options:",
        "NATS Clustering Options:",
        "Common Options:",
    ):
        assert section in text
    # every listed streaming flag (U) appears in the text
    for flag in (
        "--cluster_id", "--store", "--dir", "--max_channels", "--max_subs",
        "--max_msgs", "--max_bytes", "--max_age", "--max_inactivity",
        "--nats_server", "--stan_config", "--hb_interval", "--hb_timeout",
        "--hb_fail_count", "--ft_group", "--signal", "--encrypt",
        "--encryption_cipher", "--encryption_key", "--replace_durable",
        "--stan_debug", "--stan_trace", "-SDV", "--syslog_name", "-secure",
        "-tls_client_key", "-tls_client_cert", "-tls_client_cacert",
        "--file_compact_enabled", "--file_compact_frag", "--file_compact_interval",
        "--file_compact_min_size", "--file_buffer_size", "--file_crc ",
        "--file_crc_poly", "--file_sync", "--file_slice_max_msgs",
        "--file_slice_max_bytes", "--file_slice_max_age",
        "--file_slice_archive_script", "--file_fds_limit",
        "--file_parallel_recovery", "--file_truncate_bad_eof",
        "--file_read_buffer_size", "--file_auto_sync", "--sql_driver",
        "--sql_source", "--sql_no_caching", "--sql_max_open_conns",
        "--sql_bulk_insert_limit", "--clustered", "--cluster_node_id",
        "--cluster_bootstrap", "--cluster_peers", "--cluster_log_path",
        "--cluster_log_cache_size", "--cluster_log_snapshots",
        "--cluster_trailing_logs", "--cluster_sync", "--cluster_raft_logging",
        "--cluster_allow_add_remove_node", "--log_json", "--nats_server_bin",
        "--port", "--addr", "--http_port", "--https_port", "--config",
        "--routes", "--cluster_listen", "--user", "--pass", "--auth",
        "--tlsverify", "--help_tls", "--logtime_utc",
    ):  # fmt: skip
        assert flag in text, flag
    assert cli.tls_help().strip()


def test_version_text(tmp_path: Any) -> None:
    fake = tmp_path / "nats-server"
    fake.write_text("#!/bin/sh\necho 'nats-server: v9.8.7'\n")
    fake.chmod(0o755)
    text = cli.version_text(str(fake))
    # issue 9: nss's own release first, then the Go release it replaces
    assert text == (
        f"nss version {nss.__version__}, compatible with nats-streaming-server "
        "version 0.25.6, nats-server: v9.8.7"
    )
    missing = cli.version_text(str(tmp_path / "nope"))
    assert missing.endswith("nats-server: unknown")


def test_find_nats_server_bin_prefers_configured() -> None:
    assert cli.find_nats_server_bin("/x/nats-server") == "/x/nats-server"


def test_process_command_line() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert cli.process_command_line(["-foo"], out, err) == 1
    assert err.getvalue() == "flag provided but not defined: -foo\n"
    assert out.getvalue() == ""

    out, err = io.StringIO(), io.StringIO()
    assert cli.process_command_line(["-h"], out, err) == 0
    assert out.getvalue() == cli.usage()

    out = io.StringIO()
    assert cli.process_command_line(["--help_tls"], out, err) == 0
    assert out.getvalue() == cli.tls_help()

    out = io.StringIO()
    assert (
        cli.process_command_line(
            ["version", "--nats_server_bin=/nonexistent"], out, err
        )
        == 0
    )
    # the flag after "version" is not parsed: the bundled binary is asked
    assert out.getvalue().startswith(
        f"nss version {nss.__version__}, compatible with nats-streaming-server version 0.25.6"
    )

    parsed = cli.process_command_line(["-p", "1"], out, err)
    assert isinstance(parsed, cli.ParsedArgs)
    assert parsed.options.nats.port == 1


def test_import_is_light() -> None:
    """cli must not pull structlog/asyncio in: the server must start fast."""
    code = (
        "import sys, nss.cli; "
        "bad = [m for m in ('structlog', 'asyncio', 'nats', 'subprocess') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert res.stdout.strip() == ""
