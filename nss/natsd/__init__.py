"""Supervisor for the embedded NATS server (a ``nats-server`` child process).

The Go streaming server links nats-server into its own binary. nss cannot,
so unless ``-ns`` points at an external server it runs a real
``nats-server`` as a child process and talks to it over TCP. That brings
obligations the Go server never had, and this package exists to meet them:

* **Start-up latency.** STAN client test-suites connect ~0.5 s after
  spawning nss, so :meth:`EmbeddedNATS.start` returns the moment the child
  logs ``Server is ready`` (event-driven, no polling in the common case).
* **No orphans.** stan.py SIGKILLs nss between tests; if nats-server
  survived, the next test would find the port taken. On Linux the child
  gets ``PR_SET_PDEATHSIG=SIGKILL`` so the kernel kills it when nss dies.
* **Graceful shutdown ordering.** The child runs in its own session so a
  terminal Ctrl-C (SIGINT to the foreground process group) reaches only
  nss, which then stops its streaming work before stopping NATS.
* **One log.** The child's output is parsed and re-emitted through the
  caller's logger, as the Go server's shared logger would have printed it.
* **Real ports.** ``-p -1`` / ``-m -1`` pick random ports; the actual ones
  are learned from the child's log so nss can connect to itself.
* **Restarts.** A child that dies while serving is started again on the
  ports the first one bound (:class:`RestartPolicy`), so clients reconnect
  to the same address; one that keeps dying ends nss with a fatal line.
* **No secret in sight.** Credentials never go on the child's command line
  (``ps`` shows it to every local user) but in a private 0600 configuration
  file (:mod:`nss.natsd.config`, :mod:`nss.private_dir`).

Layout: :mod:`.supervisor` (:class:`EmbeddedNATS`: what outlives one
child), :mod:`.child` (one process: spawn, output, readiness, reaping),
:mod:`.logs` (reading the child's log lines), :mod:`.ports` (its
listeners), :mod:`.args` and :mod:`.config` (its command line and private
configuration file), :mod:`.binary` (which executable), :mod:`.restart`
(:class:`RestartPolicy`), :mod:`.errors`. This package module is the public
API.

Only the standard library is imported at module import time (ctypes is
imported lazily, when the first child is spawned) to keep nss start-up fast.
"""

from __future__ import annotations

from nss.natsd.args import build_args
from nss.natsd.binary import find_nats_server
from nss.natsd.errors import NATSServerError
from nss.natsd.logs import LogLineFn, parse_log_line
from nss.natsd.restart import RestartPolicy
from nss.natsd.supervisor import EmbeddedNATS

__all__ = [
    "EmbeddedNATS",
    "LogLineFn",
    "NATSServerError",
    "RestartPolicy",
    "build_args",
    "find_nats_server",
    "parse_log_line",
]
