"""What the SQL store says about a commit the database holds (pure logic;
the real stall is in tests/ft/test_pg_failover.py)."""

from __future__ import annotations

from nss.stores.sql.health import explain_wait


def test_a_commit_waiting_for_synchronous_replication_is_named() -> None:
    why = explain_wait([("IPC", "SyncRep")])
    assert "synchronous standby" in why and "synchronous_standby_names" in why


def test_a_commit_blocked_by_one_waiting_for_synchronous_replication_too() -> None:
    # the batch waits on the StoreLock row held by a lock check whose own
    # commit waits for the standby
    why = explain_wait([("Lock", "transactionid"), ("IPC", "SyncRep")])
    assert "wait_event SyncRep" in why


def test_any_other_wait_is_reported_as_is() -> None:
    assert explain_wait([("Lock", "relation")]) == "its session waits on Lock/relation"
    assert explain_wait([("", "")]) == "its session waits on nothing/nothing"
