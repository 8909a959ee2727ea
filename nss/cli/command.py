"""What ``nss`` does with its command line before anything starts: help,
version and schema requests end the process here, as do usage errors."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from nss.cli.errors import UsageError
from nss.cli.parser import ParsedArgs, parse_args
from nss.cli.usage import tls_help, usage
from nss.cli.version import version_text

__all__ = ["process_command_line"]


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
