"""Reading the child's log: levels, listeners, failures, what users see.

The child's output is parsed and re-emitted through nss's logger, as the Go
server's shared logger would have printed it. Pure functions, so the rules
are tested without a process.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from nss.natsd.errors import NATSServerError
from nss.natsd.ports import Listening, split_host_port

__all__ = [
    "LogLineFn",
    "listening",
    "parse_log_line",
    "public_text",
    "start_failure",
]

LogLineFn = Callable[[str, str], None]
"""``log_line(level, text)``; ``level`` is nats-server's three-letter tag
(``INF``, ``DBG``, ``TRC``, ``WRN``, ``ERR``, ``FTL``)."""

# "[1234] 2026/01/02 03:04:05.678901 [INF] text" or, with -T=false,
# "[1234] [INF] text". The timestamp part never starts with "[".
_LOG_RE = re.compile(r"^\[\d+\] (?:[^\[]\S* \S+ )?\[([A-Z]{3})\] ?(.*)$")
_CLIENT_LISTEN_RE = re.compile(r"^Listening for client connections on (\S+)$")
_MONITOR_RE = re.compile(r"^Starting (https?) monitor on (\S+)$")
_ROUTE_LISTEN_RE = re.compile(r"^Listening for route connections on (\S+)$")
_IN_USE_RE = re.compile(r"listen tcp (\S+): bind: address already in use")
_CONF_LINE = "Using configuration file: "
_DIGEST_RE = re.compile(r" ?\(sha256:[0-9a-f]+\)")

# Substrings of nats-server's listen-failure messages -> listener name.
_LISTENER_KINDS = (
    ("monitor", "monitoring"),
    ("route", "route"),
    ("profil", "profiling"),
    ("error listening on port", "client"),
)


def parse_log_line(line: str) -> tuple[str, str]:
    """Split a nats-server log line into ``(level, text)``.

    The ``[pid] date time`` prefix is dropped because nss's logger prints
    its own. Untagged output only happens for flag-parsing errors and Go
    panics, so it is reported as ``ERR``.
    """
    m = _LOG_RE.match(line)
    if m:
        return m.group(1), m.group(2)
    return "ERR", line


def _at(kind: str, hostport: str, scheme: str | None = None) -> Listening:
    try:
        host, port = split_host_port(hostport)
    except ValueError:
        return Listening(kind, None)
    return Listening(kind, port, host, scheme)


def listening(text: str) -> Listening | None:
    """The listener an INF line announces, if it announces one.

    Only INF lines may be read this way: trace lines can contain arbitrary
    client text.
    """
    if m := _CLIENT_LISTEN_RE.match(text):
        return _at("client", m.group(1))
    if m := _MONITOR_RE.match(text):
        return _at("monitor", m.group(2), m.group(1))
    if m := _ROUTE_LISTEN_RE.match(text):
        return _at("route", m.group(1))
    return None


def public_text(
    level: str,
    text: str,
    *,
    private_config: str,
    user_config: str,
    monitor_address: str,
) -> str | None:
    """The child's log text as the user should see it (None: hidden).

    nss's private configuration file (``private_config``) is an
    implementation detail: the line naming it names the user's file
    (``user_config``) instead, or is hidden. With nss owning the monitoring
    port (``monitor_address``), the child's monitor line would name the
    internal port; it is rewritten to the user's address so the log reads
    as the Go server's does.
    """
    if level != "INF":
        return text
    if private_config:
        if text.startswith(_CONF_LINE + private_config):
            return _CONF_LINE + user_config if user_config else None
        # the digest of a file with credentials in a known layout would
        # let a log reader test guesses offline
        text = _DIGEST_RE.sub("", text)
    if monitor_address and _MONITOR_RE.match(text):
        scheme, _, hostport = monitor_address.partition("://")
        return f"Starting {scheme} monitor on {hostport}"
    return text


def start_failure(
    rc: int, fatal: str | None, last_lines: Sequence[str], config_file: str
) -> NATSServerError:
    """Why a child exited before it was ready, in one line.

    The fatal line if there was one, else the last few lines; a taken port
    is named by its listener, the most common start-up failure.
    """
    reason = fatal
    if reason is None:
        tail = [line for line in list(last_lines)[-3:] if line.strip()]
        reason = " | ".join(parse_log_line(t)[1] for t in tail)
        if not reason:
            reason = "no output"
            if config_file:
                reason += f" (check the log settings in {config_file})"
    in_use = _IN_USE_RE.search(reason)
    if in_use:
        low = reason.lower()
        kind = next((k for key, k in _LISTENER_KINDS if key in low), "listen")
        msg = f"{kind} address {in_use.group(1)} already in use ({reason})"
    else:
        msg = reason
    return NATSServerError(
        f"embedded NATS server exited with status {rc} before it was ready: {msg}",
        port_in_use=in_use is not None,
        returncode=rc,
        last_lines=tuple(last_lines),
    )
