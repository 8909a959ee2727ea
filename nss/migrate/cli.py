"""``nss-migrate``: copy a store into an empty one (any backend to any
backend), optionally importing a Go clustered node's Raft state.

Exit codes: 0 copied and verified; 1 refused or failed (the message says
why; a destination left behind is marked incomplete and nss refuses it);
2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Callable
from typing import Any

from nss import redact
from nss.config import ConfigError
from nss.config_apply import apply_streaming_config
from nss.migrate.raft.log import RaftLogError
from nss.migrate.run import MigrateError, Plan, migrate
from nss.migrate.target import TargetError, copy_limits, parse_target
from nss.options import Options, StoreLimits
from nss.stores.base import StoreError

PROG = "nss-migrate"
REKEY_MODULE = "nss.stores.rekey"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Copy a NATS Streaming store into an empty one, verified; optionally "
            "import a Go clustered node (--raft-log)."
        ),
        epilog=(
            "SRC, DST: file:///abs/path/to/datastore | postgresql://user[:pw]@host:port/db "
            "| mysql://user[:pw]@host:port/db"
        ),
    )
    p.add_argument(
        "--from", dest="src", required=True, metavar="SRC", help="the store to copy (stopped)"
    )
    p.add_argument(
        "--to", dest="dst", required=True, metavar="DST", help="an empty store to copy into"
    )
    p.add_argument(
        "--raft-log",
        metavar="DIR",
        default="",
        help="a Go clustered node's --cluster_log_path (or its <cluster ID> "
        "directory): replay its Raft snapshot and log on top of SRC",
    )
    p.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        default="",
        help="the configuration file of the server that serves the copy: its message "
        "limits (MaxMsgs, MaxBytes) are applied while copying (default: none)",
    )
    p.add_argument(
        "--rekey",
        metavar="SPEC",
        default=None,
        help="re-encrypt the messages while copying (needs nss's encryption support)",
    )
    p.add_argument(
        "--progress", action="store_true", help="draw a progress bar even when stderr is no tty"
    )
    return p


def rekey_hook(spec: str) -> Callable[..., Any]:
    """The re-encryption function of ``nss.stores.rekey``, when this nss has
    one; MigrateError otherwise."""
    try:
        mod = importlib.import_module(REKEY_MODULE)
    except ImportError:
        mod = None
    fn = getattr(mod, "rekey", None) if mod is not None else None
    if fn is None:
        raise MigrateError("--rekey is not available in this version of nss")
    return fn


def server_limits(path: str) -> StoreLimits | None:
    """The store limits of a server started with ``-c path``; None without."""
    if not path:
        return None
    opts = Options()
    try:
        apply_streaming_config(opts, path, set(), strict=False)
    except (ConfigError, OSError) as e:
        raise MigrateError(f"--config {path}: {e}") from e
    return opts.streaming.store_limits


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    say = _printer()
    try:
        plan = Plan(
            src=parse_target(args.src),
            dst=parse_target(args.dst),
            raft_log=args.raft_log,
            progress=args.progress or sys.stderr.isatty(),
            limits=copy_limits(lim) if (lim := server_limits(args.config)) else None,
        )
        if args.rekey is not None:
            rekey_hook(args.rekey)
            raise MigrateError("--rekey: wiring into the copy is not done yet")
        if plan.src == plan.dst:
            raise MigrateError("--from and --to name the same store")
        result = asyncio.run(migrate(plan, say))
    except (MigrateError, TargetError, RaftLogError, StoreError) as e:
        say(f"{PROG}: error: {redact.text(str(e))}")
        return 1
    except KeyboardInterrupt:
        say(f"{PROG}: interrupted; the destination is marked as an incomplete copy")
        return 1
    say(
        f"copied and verified: {result.channels} channel(s), {result.messages} message(s), "
        f"{result.subscriptions} subscription(s), {result.clients} client(s) "
        f"in {result.seconds:.1f} s ({result.rate:,.0f} msgs/s)"
    )
    return 0


def _printer() -> Callable[[str], None]:
    def say(text: str) -> None:
        print(redact.text(text), file=sys.stderr, flush=True)

    return say


if __name__ == "__main__":
    sys.exit(main())
