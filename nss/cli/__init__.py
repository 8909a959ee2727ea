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

Layout: :mod:`.flags` (the flag table), :mod:`.values` (Go ``strconv``
value syntax), :mod:`.parser` (``parse_args``), :mod:`.checks` (option
combinations refused), :mod:`.usage` and :mod:`.version` (the ``-h``,
``--help_tls`` and ``-v`` texts), :mod:`.command` (``process_command_line``),
:mod:`.errors`. This package module is the public API.

It is imported on the start-up path, so it only depends on the standard
library, ``nss.options`` and ``nss.units``.
"""

from __future__ import annotations

from nss.cli.checks import check_cluster_id, check_supported
from nss.cli.command import process_command_line
from nss.cli.errors import UsageError
from nss.cli.parser import ParsedArgs, parse_args
from nss.cli.usage import tls_help, usage
from nss.cli.version import find_nats_server_bin, version_text

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
