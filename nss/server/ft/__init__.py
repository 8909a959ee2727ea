"""Fault tolerance: the standby / active state machine (ft.md).

Every member starts as standby: it listens on ``_STAN.ft.<cid>.<group>``
and touches no store data. When the active's heartbeats stop for the missed
interval it tries the store lock; with the lock it activates (recovers the
store and serves), heartbeats every interval, and keeps proving it still
owns the lock. Every decision is one log line with a stable wording, so
operators' alerts and the tests assert what the server decided.

``machine`` holds the policy (pure), ``loop`` the asyncio driver and
``heartbeat`` the Go-compatible wire format. The package itself imports
only the latter, so importing the pure machine never pulls in the driver.
"""

from nss.server.ft.heartbeat import go_time_marshal, go_time_unmarshal

__all__ = ["go_time_marshal", "go_time_unmarshal"]
