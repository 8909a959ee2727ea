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
        "--to", dest="dst", default="", metavar="DST", help="an empty store to copy into"
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
        action="store_true",
        help="instead of copying: re-encrypt the stopped store SRC in place with a new key "
        "(old and new keys from $NSS_REKEY_OLD_KEY / $NSS_REKEY_NEW_KEY or the key files; "
        "a kill midway leaves the old or the new store whole; see nss-rekey)",
    )
    p.add_argument("--cipher", default="", help="--rekey: AES or CHACHA for the new key")
    p.add_argument("--old-key-file", default=None, help="--rekey: file holding the old key")
    p.add_argument("--new-key-file", default=None, help="--rekey: file holding the new key")
    p.add_argument(
        "--progress", action="store_true", help="draw a progress bar even when stderr is no tty"
    )
    return p


def rekey_hook() -> Callable[..., Any]:
    """The command of ``nss.stores.rekey``, when this nss has one;
    MigrateError otherwise."""
    try:
        mod = importlib.import_module(REKEY_MODULE)
    except ImportError:
        mod = None
    fn = getattr(mod, "main", None) if mod is not None else None
    if fn is None:
        raise MigrateError("--rekey is not available in this version of nss")
    return fn


def rekey(args: argparse.Namespace) -> int:
    """``--rekey``: the store SRC re-encrypted in place by ``nss-rekey``."""
    target = parse_target(args.src)
    argv = (
        ["--dir", target.path]
        if target.kind == "FILE"
        else ["--sql_source", target.source, "--sql_driver", target.driver]
    )
    if args.cipher:
        argv += ["--cipher", args.cipher]
    if args.old_key_file:
        argv += ["--old-key-file", args.old_key_file]
    if args.new_key_file:
        argv += ["--new-key-file", args.new_key_file]
    return int(rekey_hook()(argv))


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
    p = parser()
    args = p.parse_args(argv)
    say = _printer()
    if not args.rekey and not args.dst:
        p.error("--to is required (unless --rekey)")
    try:
        if args.rekey:
            if args.dst and parse_target(args.dst) != parse_target(args.src):
                raise MigrateError("--rekey re-encrypts SRC in place: give no --to")
            return rekey(args)
        plan = Plan(
            src=parse_target(args.src),
            dst=parse_target(args.dst),
            raft_log=args.raft_log,
            progress=args.progress or sys.stderr.isatty(),
            limits=copy_limits(lim) if (lim := server_limits(args.config)) else None,
        )
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
