"""The rules nss/stores/base.py writes once for every backend: MaxMsgs and
MaxBytes with Go's "Reached limits" warning, MaxSubscriptions, MaxChannels
and the channel bookkeeping. A tiny driver in this file implements only the
small abstract methods, so what is asserted here is the base alone."""

from __future__ import annotations

import io

import pytest

from nss import log
from nss.options import ChannelLimits, StoreLimits
from nss.pb import spb_pb2 as spb
from nss.stores.base import (
    ERR_ALREADY_EXISTS,
    ERR_NOT_FOUND,
    ERR_TOO_MANY_CHANNELS,
    ERR_TOO_MANY_SUBS,
    ChannelStore,
    MsgStore,
    RecoveredState,
    Store,
    StoreError,
    SubStore,
)
from nss.stores.memory import MemoryStore


class ListMsgStore(MsgStore):
    """Messages in a list; ``stuck`` makes dropping impossible."""

    def __init__(self, limits: ChannelLimits) -> None:
        super().__init__("ch", limits)
        self.msgs: list[tuple[int, bytes]] = []
        self.stuck = False

    def store(self, seq: int, timestamp: int, data: bytes) -> None:
        self.msgs.append((seq, data))
        count, nbytes = self.state()
        if count > self.over_msgs or nbytes > self.over_bytes:
            self.apply_limits(count, nbytes)

    def _drop_oldest(self) -> bool:
        if self.stuck:
            return False
        self.msgs.pop(0)
        return True

    def state(self) -> tuple[int, int]:
        return len(self.msgs), sum(len(d) for _, d in self.msgs)

    def lookup(self, seq: int) -> bytes | None:
        return next((d for s, d in self.msgs if s == seq), None)

    def first_sequence(self) -> int:
        return self.msgs[0][0] if self.msgs else 0

    def last_sequence(self) -> int:
        return self.msgs[-1][0] if self.msgs else 0

    def timestamp_of(self, seq: int) -> int | None:
        return None

    def mark(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def release(self) -> None:
        pass

    def expire(self, now_ns: int) -> float | None:
        return None

    def empty(self) -> None:
        self.msgs.clear()


class SetSubStore(SubStore):
    def __init__(self, limits: ChannelLimits, writable: bool = True) -> None:
        super().__init__(limits)
        self.ids: set[int] = set()
        self.writable = writable

    def check_writable(self) -> None:
        if not self.writable:
            raise StoreError("unavailable")

    def _sub_count(self) -> int:
        return len(self.ids)

    def _create_sub(self, sub: spb.SubState) -> None:
        sub.ID = max(self.ids, default=0) + 1
        self.ids.add(sub.ID)

    def update_sub(self, sub: spb.SubState) -> None:
        self.ids.add(sub.ID)

    def delete_sub(self, sub_id: int) -> None:
        self.ids.discard(sub_id)

    def add_seq_pending(self, sub_id: int, seq: int) -> None:
        pass

    def ack_seq_pending(self, sub_id: int, seq: int) -> None:
        pass


class DictStore(Store):
    name = "TEST"

    def __init__(self, limits: StoreLimits) -> None:
        super().__init__(limits)
        self.made: list[tuple[str, ChannelLimits]] = []
        self.dropped: list[str] = []

    def _new_channel(self, name: str, limits: ChannelLimits) -> ChannelStore:
        self.made.append((name, limits))
        return ChannelStore(name, ListMsgStore(limits), SetSubStore(limits))

    def _drop_channel(self, cs: ChannelStore) -> None:
        self.dropped.append(cs.name)

    def init(self, info: spb.ServerInfo) -> None:
        pass

    def recover(self) -> RecoveredState | None:
        return None

    def add_client(self, info: spb.ClientInfo) -> None:
        pass

    def delete_client(self, client_id: str) -> None:
        pass


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    out = io.StringIO()
    monkeypatch.setattr(log._SINK, "stream", out)
    return out


def warnings(out: io.StringIO) -> list[str]:
    return [line for line in out.getvalue().splitlines() if "Reached limits" in line]


def test_max_msgs_drops_the_oldest_and_warns_once_like_go(logged: io.StringIO) -> None:
    ms = ListMsgStore(ChannelLimits(max_msgs=2, max_bytes=0))
    for seq in range(1, 6):
        ms.store(seq, seq, b"x" * 10)
    assert [s for s, _ in ms.msgs] == [4, 5]
    # Go's line: counts after the first drop, sizes as FriendlyBytes
    assert len(warnings(logged)) == 1
    assert warnings(logged)[0].endswith(
        'Reached limits for store "ch" (msgs=2/2 bytes=20 B/0 B), '
        "dropping old messages to make room for new ones"
    )


def test_max_bytes_always_keeps_the_newest(logged: io.StringIO) -> None:
    ms = ListMsgStore(ChannelLimits(max_msgs=0, max_bytes=1500))
    ms.store(1, 1, b"a" * 1000)
    ms.store(2, 2, b"b" * 1000)
    ms.store(3, 3, b"c" * 4000)  # alone over the limit: still stored
    assert [s for s, _ in ms.msgs] == [3]
    assert "bytes=1000 B/1.46 KB)" in warnings(logged)[0]


def test_no_warning_when_not_reporting(logged: io.StringIO) -> None:
    """Recovery re-applies the limits silently, as Go does."""
    ms = ListMsgStore(ChannelLimits(max_msgs=1))
    ms.msgs = [(1, b"a"), (2, b"b"), (3, b"c")]
    ms.apply_limits(*ms.state(), report=False)
    assert [s for s, _ in ms.msgs] == [3]
    assert warnings(logged) == [] and not ms.hit_limit
    ms.store(4, 4, b"d")
    assert len(warnings(logged)) == 1 and ms.hit_limit


def test_a_driver_that_cannot_drop_stops_the_loop(logged: io.StringIO) -> None:
    ms = ListMsgStore(ChannelLimits(max_msgs=1))
    ms.stuck = True
    ms.store(1, 1, b"a")
    ms.store(2, 2, b"b")
    assert len(ms.msgs) == 2 and warnings(logged) == []
    ms.stuck = False
    ms.store(3, 3, b"c")  # the next store catches up
    assert [s for s, _ in ms.msgs] == [3]


def test_unlimited_never_drops() -> None:
    ms = ListMsgStore(ChannelLimits(max_msgs=0, max_bytes=0))
    for seq in range(1, 100):
        ms.store(seq, seq, b"x" * 1000)
    assert len(ms.msgs) == 99


def test_memory_store_logs_the_same_line(logged: io.StringIO) -> None:
    st = MemoryStore(StoreLimits(max_msgs=3))
    ms = st.create_channel("foo").msgs
    for seq in range(1, 6):
        ms.store(seq, seq, b"y" * 2000)
    assert len(warnings(logged)) == 1
    assert warnings(logged)[0].endswith(
        'Reached limits for store "foo" (msgs=3/3 bytes=5.86 KB/976.56 MB), '
        "dropping old messages to make room for new ones"
    )


def test_max_subscriptions() -> None:
    ss = SetSubStore(ChannelLimits(max_subscriptions=2))
    a, b = spb.SubState(), spb.SubState()
    ss.create_sub(a)
    ss.create_sub(b)
    assert (a.ID, b.ID) == (1, 2)
    with pytest.raises(StoreError, match=f"^{ERR_TOO_MANY_SUBS}$"):
        ss.create_sub(spb.SubState())
    ss.delete_sub(1)
    ss.create_sub(spb.SubState())
    assert ss.ids == {2, 3}


def test_unwritable_sub_store_refuses_before_the_limit() -> None:
    ss = SetSubStore(ChannelLimits(max_subscriptions=1), writable=False)
    ss.ids = {1}
    with pytest.raises(StoreError, match="^unavailable$"):
        ss.create_sub(spb.SubState())


def test_channels_bookkeeping() -> None:
    st = DictStore(StoreLimits(max_channels=2, max_msgs=7))
    a = st.create_channel("a")
    assert st.channels == {"a": a}
    assert st.made[0][0] == "a" and st.made[0][1].max_msgs == 7
    with pytest.raises(StoreError, match=f"^{ERR_ALREADY_EXISTS}$"):
        st.create_channel("a")
    st.create_channel("b")
    with pytest.raises(StoreError, match=f"^{ERR_TOO_MANY_CHANNELS}$"):
        st.create_channel("c")
    assert [n for n, _ in st.made] == ["a", "b"]  # refused ones never reach the driver
    st.delete_channel("a")
    assert st.dropped == ["a"] and list(st.channels) == ["b"]
    with pytest.raises(StoreError, match=f"^{ERR_NOT_FOUND}$"):
        st.delete_channel("a")
    assert st.create_channel("c").name == "c"


def test_per_channel_limits_reach_the_driver() -> None:
    lim = StoreLimits(max_msgs=10)
    lim.per_channel = {"foo.*": ChannelLimits(max_msgs=3)}
    st = DictStore(lim)
    st.create_channel("foo.bar")
    st.create_channel("other")
    assert {n: cl.max_msgs for n, cl in st.made} == {"foo.bar": 3, "other": 10}
