"""The nats-server command line nss builds from its options.

Only non-secret settings become flags: a process's command line is public
(``ps``), so credentials travel in the child's private configuration file
(:mod:`nss.natsd.config`).
"""

from __future__ import annotations

from collections.abc import Mapping

from nss.options import NATSOptions
from nss.redact import has_credentials

__all__ = ["build_args", "child_env", "with_port"]


def build_args(opts: NATSOptions, *, ports_file_dir: str = "") -> list[str]:
    """Translate :class:`NATSOptions` into nats-server command-line flags.

    A flag is passed only when its value differs from the NATSOptions
    default (which equals nats-server's own default). That mirrors
    nats-server's flag/config merge rule -- an unset flag does not override
    the ``-c`` configuration file -- so ``nss -c nats.conf`` keeps the
    file's ``port``, ``listen``, ``cluster`` etc. (Consequence: explicitly
    passing a default value, e.g. ``-p 4222``, cannot override a config
    file's ``port``.)

    Deliberately not passed: ``-l``/``--log_size_limit``/``-T``/
    ``--logtime_utc``/``-s``/``-r`` (nss owns logging: the child's output is
    re-emitted through nss's logger, and readiness is detected from it),
    ``-t`` and ``-sl`` (handled by nss itself, no server is started), and
    every secret (see :mod:`nss.natsd.config`).

    ``--cluster`` without ``--cluster_name`` is passed as is: nats-server
    then generates a dynamic name that it replaces with the remote's name
    when a route connects, which is what lets a plain
    ``--cluster URL --routes URL`` invocation join another nss or a named
    NATS cluster (the first route attempt may be rejected and retried ~1 s
    later, exactly as with the Go streaming server). Inventing a fixed
    default name would break joining named clusters.
    """
    d = NATSOptions()
    args: list[str] = []

    def opt(flag: str, value: object, default: object) -> None:
        if value != default and value is not None:
            args.extend([flag, str(value)])

    def flag(name: str, value: bool) -> None:
        if value:
            args.append(name)

    opt("-a", opts.host, d.host)
    opt("-p", opts.port, d.port)
    opt("-n", opts.server_name, d.server_name)
    opt("--client_advertise", opts.client_advertise, d.client_advertise)
    opt("-m", opts.http_port, d.http_port)
    opt("-ms", opts.https_port, d.https_port)
    opt("-c", opts.config_file, d.config_file)
    # -P is nss's own pid file (app.py): signals sent by pid reach nss
    opt("--ports_file_dir", opts.ports_file_dir or ports_file_dir, "")

    flag("-D", opts.debug)
    if opts.trace_verbose:
        args.append("-VV")
    else:
        flag("-V", opts.trace)
    opt("--max_traced_msg_len", opts.max_traced_msg_len, d.max_traced_msg_len)
    if not opts.config_file:
        # nss's logger adds its own timestamps. With a config file, leave
        # ``logtime`` to the file in case it redirects the child's log.
        args.append("-T=false")

    # --user/--pass/--auth and URLs with credentials would be readable by
    # anyone on the host (ps): they go into the child's private config file
    # instead (nss.natsd.config.credentials_config).
    if not has_credentials(opts.cluster_listen):
        opt("--cluster", opts.cluster_listen, d.cluster_listen)
    opt("--cluster_advertise", opts.cluster_advertise, d.cluster_advertise)
    # A Go bool flag: "--no_advertise true" would end flag parsing.
    if opts.no_advertise:
        args.append("--no_advertise=true")
    opt("--connect_retries", opts.connect_retries, d.connect_retries)
    opt("--cluster_name", opts.cluster_name, d.cluster_name)
    if not has_credentials(opts.routes):
        opt("--routes", opts.routes, d.routes)

    flag("--tls", opts.tls)
    flag("--tlsverify", opts.tls_verify)
    opt("--tlscert", opts.tls_cert, d.tls_cert)
    opt("--tlskey", opts.tls_key, d.tls_key)
    opt("--tlscacert", opts.tls_ca_cert, d.tls_ca_cert)

    opt("--profile", opts.profile, d.profile)
    flag("-js", opts.jetstream)
    opt("-sd", opts.store_dir, d.store_dir)
    return args


def child_env(
    opts: NATSOptions, environ: Mapping[str, str], user_config: str = ""
) -> dict[str, str]:
    """The child's environment: nss's own, with ``GOMAXPROCS=1`` added.

    Nearly all of the child's traffic is STAN traffic, which the one nss
    event loop bounds, so a second Go processor buys the child nothing but
    cross-thread wake-ups: with one, stan-bench measured its CPU per message
    25-30% lower and nss's throughput 6-10% higher on 2 cores. A user's own
    ``GOMAXPROCS`` wins, and JetStream (``-js``, or a ``jetstream`` block in
    the user's configuration file) keeps Go's default: its storage work is
    the child's own.
    """
    env = dict(environ)
    if "GOMAXPROCS" in env or opts.jetstream or _mentions_jetstream(user_config):
        return env
    env["GOMAXPROCS"] = "1"
    return env


def _mentions_jetstream(path: str) -> bool:
    if not path:
        return False
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "jetstream" in f.read().lower()
    except OSError:
        return False


def with_port(url: str, port: int) -> str:
    """``url`` listening on ``port`` instead (``nats://host:-1`` pinned)."""
    head, sep, tail = url.rpartition(":")
    if not sep or not tail.strip("-").isdigit():
        return url
    return f"{head}:{port}"
