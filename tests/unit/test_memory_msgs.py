"""The MEMORY message store's own layout: flat arrays by sequence.

What every store does is in test_store_contract.py; here, what this layout
must also get right: a long-running channel under limits or MaxAge keeps
its arrays bounded, sequences it never got read as absent, and a batch's
rollback works across the cut-off of the dropped head."""

from __future__ import annotations

from nss.options import StoreLimits
from nss.stores.memory import MemoryMsgStore, MemoryStore

SEC = 1_000_000_000


def channel(**limits: object) -> MemoryMsgStore:
    ms = MemoryStore(StoreLimits(**limits)).create_channel("foo").msgs  # type: ignore[arg-type]
    assert isinstance(ms, MemoryMsgStore)
    return ms


def test_limits_keep_the_arrays_bounded() -> None:
    ms = channel(max_msgs=100)
    for s in range(1, 50_001):
        ms.store(s, s * SEC, b"m%d" % s)
    assert ms.state() == (100, sum(len(b"m%d" % s) for s in range(49_901, 50_001)))
    assert (ms.first_sequence(), ms.last_sequence()) == (49_901, 50_000)
    assert ms.lookup(49_900) is None and ms.lookup(49_901) == b"m49901"
    assert ms.timestamp_of(50_000) == 50_000 * SEC
    assert len(ms._data) <= 2 * (MemoryMsgStore._TRIM + 100)


def test_max_age_empties_then_the_channel_goes_on() -> None:
    ms = channel(max_age=1.0)
    for s in range(1, 10_001):
        ms.store(s, s, b"x")
    assert ms.expire(10 * SEC) is None
    assert ms.state() == (0, 0) and ms.first_sequence() == 10_001
    assert len(ms._data) < MemoryMsgStore._TRIM
    ms.store(10_001, 20 * SEC, b"y")
    assert ms.state() == (1, 1) and ms.first_sequence() == 10_001
    assert ms.lookup(10_001) == b"y" and ms.lookup(10_000) is None
    assert ms.expire(20 * SEC) == 1.0


def test_sequences_never_stored_are_absent() -> None:
    ms = channel(max_msgs=2)
    ms.store(1, SEC, b"a")
    ms.store(5, 5 * SEC, b"b")
    assert ms.state() == (2, 2) and ms.lookup(3) is None and ms.timestamp_of(3) is None
    ms.store(6, 6 * SEC, b"c")  # the limit drops 1, and the first is then 5
    assert (ms.first_sequence(), ms.state()) == (5, (2, 2))


def test_rollback_after_the_head_was_cut() -> None:
    ms = channel(max_msgs=10)
    for s in range(1, 3 * MemoryMsgStore._TRIM):
        ms.store(s, s, b"%d" % s)
    last = ms.last_sequence()
    before = (ms.first_sequence(), last, ms.state())
    ms.mark()
    for s in range(last + 1, last + 30):
        ms.store(s, s, b"new")
    ms.rollback()
    assert (ms.first_sequence(), ms.last_sequence(), ms.state()) == before
    assert [ms.lookup(s) for s in range(last - 9, last + 2)] == [
        *(b"%d" % s for s in range(last - 9, last + 1)),
        None,
    ]
