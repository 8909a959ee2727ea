"""The server's one state, as /streaming/serverz and /metrics report it.

A ``StrEnum`` so the members are the very strings Go serves ("FT_ACTIVE")
in JSON, Prometheus labels and log lines, while the code names them instead
of repeating literals that a typo would silently never match.
"""

from __future__ import annotations

from enum import StrEnum


class ServerState(StrEnum):
    STANDALONE = "STANDALONE"
    FT_ACTIVE = "FT_ACTIVE"
    FT_STANDBY = "FT_STANDBY"
    FAILED = "FAILED"
    SHUTDOWN = "SHUTDOWN"
    CLUSTERED = "CLUSTERED"
