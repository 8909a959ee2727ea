"""Fault tolerance: the standby / active state machine (ft.md).

Every member starts as standby: it listens on ``_STAN.ft.<cid>.<group>``
and touches no store data. When the active's heartbeats stop for the missed
interval it tries the store lock; with the lock it activates (recovers the
store and serves), heartbeats every interval, and keeps proving it still
owns the lock. Every decision is one log line with a stable wording, so
operators' alerts and the tests assert what the server decided.

``machine`` holds the policy (pure), ``loop`` the asyncio driver and
``heartbeat`` the Go-compatible wire format.
"""

from nss.server.ft.heartbeat import go_time_marshal, go_time_unmarshal
from nss.server.ft.loop import FTLoop
from nss.server.ft.machine import LOG_ACTIVE, LOG_NO_LOCK, LOG_STANDBY, jitter

__all__ = [
    "LOG_ACTIVE",
    "LOG_NO_LOCK",
    "LOG_STANDBY",
    "FTLoop",
    "go_time_marshal",
    "go_time_unmarshal",
    "jitter",
]
