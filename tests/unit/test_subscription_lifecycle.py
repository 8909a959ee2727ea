"""The subscription lifecycle as tables of transitions on the MEMORY store:
no NATS, no process. Each row is a request (or a removal) applied to a
channel's state, and what the channel, its store and the result look like
after it."""

from __future__ import annotations

import time

import pytest

from nss.options import StoreLimits
from nss.pb import protocol_pb2 as pb
from nss.pb import spb_pb2 as spb
from nss.server.core.channels import ChannelRegistry
from nss.server.core.clients import ClientRegistry
from nss.server.core.expiry import inactivity_left
from nss.server.core.model import Channel, Client
from nss.server.core.recovery import restore_state
from nss.server.core.subscriptions import (
    ERR_DUP_DURABLE,
    ERR_DURABLE_QUEUE_COLON,
    attach,
    create_or_resume,
    find_by_inbox,
    start_position,
    take_offline,
)
from nss.stores.base import RecoveredChannel, RecoveredState, RecoveredSubscription
from nss.stores.memory import MemoryStore


def _store(**limits: int) -> MemoryStore:
    return MemoryStore(StoreLimits(**limits))


def _channel(store: MemoryStore, name: str = "foo", msgs: int = 0) -> Channel:
    ch, _ = ChannelRegistry(store).lookup_or_create(name)
    base = time.time_ns() - 10_000_000_000
    for seq in range(1, msgs + 1):
        ts = base + seq * 1_000_000_000
        data = pb.MsgProto(sequence=seq, subject=name, data=b"x", timestamp=ts)
        ch.msgs.store(seq, ts, data.SerializeToString())
    ch.next_seq = msgs + 1
    return ch


def _req(**kw: object) -> pb.SubscriptionRequest:
    base = {"clientID": "c1", "subject": "foo", "inbox": "in.1", "maxInFlight": 10}
    base["ackWaitInSecs"] = 30
    base.update(kw)
    return pb.SubscriptionRequest(**base)  # type: ignore[arg-type]


def _subscribe(ch: Channel, client: Client, n: int = 1, **kw: object):
    created = create_or_resume(ch, client, _req(clientID=client.id, **kw), f"ack.{n}")
    attach(created.sub, client)
    return created


# ------------------------------------------------------------ start position
@pytest.mark.parametrize(
    "position, start_seq, delta_s, msgs, want",
    [
        (pb.NewOnly, 0, 0, 5, 5),
        (pb.NewOnly, 0, 0, 0, 0),
        (pb.LastReceived, 0, 0, 5, 4),
        (pb.LastReceived, 0, 0, 0, 0),
        (pb.First, 0, 0, 5, 0),
        (pb.First, 0, 0, 0, 0),
        (pb.SequenceStart, 3, 0, 5, 2),
        (pb.SequenceStart, 0, 0, 5, 0),
        (pb.SequenceStart, 99, 0, 5, 5),
        # message n is stamped n seconds after base = now - 10 s: the last
        # 6.5 s start at message 4, the last 8.5 s at message 2
        (pb.TimeDeltaStart, 0, 6.5, 5, 3),
        (pb.TimeDeltaStart, 0, 8.5, 5, 1),
        (pb.TimeDeltaStart, 0, 60, 5, 0),
    ],
)
def test_start_position(position, start_seq, delta_s, msgs, want):
    ch = _channel(_store(), msgs=msgs)
    got = start_position(ch.msgs, position, start_seq, int(delta_s * 1e9), time.time_ns())
    assert got == want


def test_start_position_after_messages_expired_starts_at_first():
    ch = _channel(_store(max_msgs=3), msgs=5)  # 1 and 2 dropped by the limit
    assert start_position(ch.msgs, pb.SequenceStart, 1, 0, 0) == 2
    assert start_position(ch.msgs, pb.First, 0, 0, 0) == 2


# ------------------------------------------------------------ create / resume
def test_plain_subscription_is_persisted_and_listed():
    ch = _channel(_store(), msgs=2)
    c = Client("c1", "hb")
    created = _subscribe(ch, c, startPosition=pb.First)
    sub = created.sub
    assert not created.resumed and sub.id > 0 and sub.last_sent == 0
    assert ch.plain == [sub] and c.subs == [sub] and ch.by_ack == {"ack.1": sub}
    assert find_by_inbox(ch, "ack.1") is sub and find_by_inbox(ch, "in.1") is sub
    assert ch.has_active_subs()


def test_durable_close_then_resume_keeps_position_and_record():
    ch = _channel(_store(), msgs=3)
    c = Client("c1", "hb")
    sub = _subscribe(ch, c, durableName="d", startPosition=pb.First).sub
    sub.last_sent = 3
    sub.pending = {2: 0.0, 3: 0.0}
    r = take_offline(sub, unsubscribe=False)
    assert r.ack_sid == 0 and r.heir is None and r.channel_idle
    assert sub.is_closed and sub.client is None and ch.durables == {"c1-foo-d": sub}
    assert ch.all_subs() == [sub]  # an offline durable is still listed
    again = _subscribe(ch, c, 2, durableName="d", startPosition=pb.First)
    assert again.resumed and again.sub is sub and sub.last_sent == 3
    assert not sub.is_closed and sub.ack_inbox == "ack.2" and sub.pending == {2: 0.0, 3: 0.0}


def test_durable_unsubscribe_forgets_it():
    ch = _channel(_store())
    c = Client("c1", "hb")
    sub = _subscribe(ch, c, durableName="d").sub
    take_offline(sub, unsubscribe=True)
    assert ch.durables == {} and ch.all_subs() == []
    assert not _subscribe(ch, c, 2, durableName="d").resumed


def test_duplicate_durable_refused_or_replaced():
    ch = _channel(_store())
    c = Client("c1", "hb")
    first = _subscribe(ch, c, durableName="d").sub
    first.ack_sid = 7
    with pytest.raises(ValueError, match=ERR_DUP_DURABLE):
        create_or_resume(ch, c, _req(durableName="d"), "ack.2")
    created = create_or_resume(ch, c, _req(durableName="d"), "ack.2", replace_durable=True)
    assert created.resumed and created.sub is first
    assert created.replaced is not None and created.replaced.ack_sid == 7


def test_durable_queue_name_with_colon_refused():
    ch = _channel(_store())
    with pytest.raises(ValueError, match=ERR_DURABLE_QUEUE_COLON):
        create_or_resume(ch, Client("c1", "hb"), _req(qGroup="q", durableName="a:b"), "a")


def test_max_subscriptions_refused_without_change():
    ch = _channel(_store(max_subscriptions=1))
    c = Client("c1", "hb")
    _subscribe(ch, c)
    with pytest.raises(Exception, match="too many subscriptions"):
        _subscribe(ch, c, 2)
    assert len(ch.plain) == 1


# ------------------------------------------------------------ queue groups
def test_queue_member_leaving_hands_over_to_the_group():
    ch = _channel(_store(), msgs=4)
    a, b = Client("a", "hb"), Client("b", "hb")
    m1 = _subscribe(ch, a, 1, qGroup="q", startPosition=pb.First).sub
    ch.queues["q"].last_sent = 3
    m2 = _subscribe(ch, b, 2, qGroup="q").sub
    assert m2.group is m1.group and m1.group is not None
    assert m1.group.members == [m1, m2] and ch.plain == []
    r = take_offline(m1, unsubscribe=False)
    assert r.heir is m1.group and not r.channel_idle
    r = take_offline(m2, unsubscribe=False)
    assert r.heir is None and r.channel_idle and "q" not in ch.queues


@pytest.mark.parametrize("unsubscribe, shadow_kept", [(False, True), (True, False)])
def test_durable_queue_last_member_leaves_a_shadow(unsubscribe, shadow_kept):
    ch = _channel(_store(), msgs=2)
    c = Client("c1", "hb")
    sub = _subscribe(ch, c, qGroup="q", durableName="d", startPosition=pb.First).sub
    sub.last_sent = 2
    take_offline(sub, unsubscribe=unsubscribe)
    group = ch.queues.get("d:q")
    assert (group is not None and group.shadow is sub) == shadow_kept
    if shadow_kept:
        assert sub.client_id == "" and sub.saved_client_id == "c1"
        again = _subscribe(ch, Client("c2", "hb"), 2, qGroup="q", durableName="d")
        assert again.resumed and again.sub is sub and sub.last_sent == 2
        assert group is not None and group.shadow is None and group.members == [sub]


# ------------------------------------------------------------ recovery
def test_recovery_decides_what_each_stored_subscription_becomes():
    store = _store()
    ch = _channel(store, msgs=1)
    rows = [
        ("alive", "", "", False, False, True),  # online plain
        ("gone", "", "", False, False, False),  # plain of a vanished client: dropped
        ("alive", "", "d", True, True, True),  # closed durable: offline
        ("gone", "q", "", False, False, False),  # member of a vanished client: dropped
        ("", "d2:q2", "d2", True, False, True),  # durable queue shadow
    ]
    recovered = []
    for i, (client, q, durable, is_durable, closed, _) in enumerate(rows):
        st = spb.SubState(
            clientID=client,
            qGroup=q,
            durableName=durable,
            isDurable=is_durable,
            isClosed=closed,
            inbox=f"in{i}",
            ackInbox=f"ack{i}",
            maxInFlight=1,
        )
        ch.subs_store.create_sub(st)
        recovered.append(RecoveredSubscription(st, {1} if i == 0 else set()))
    rs = RecoveredState(
        spb.ServerInfo(ClusterID="c"),
        [spb.ClientInfo(ID="alive", HbInbox="hb")],
        {"foo": RecoveredChannel(ch.store, recovered)},
    )
    clients, channels = ClientRegistry(), ChannelRegistry(store)
    assert restore_state(rs, clients, channels) == sum(r[5] for r in rows)
    rch = channels.get("foo")
    assert rch is not None
    assert [s.inbox for s in rch.plain] == ["in0"]
    assert set(rch.by_ack) == {"ack0"}
    online = rch.plain[0]
    assert online.client is clients.get("alive") and online.stalled  # 1 pending of 1
    assert [s.inbox for s in rch.durables.values()] == ["in2"]
    assert set(rch.queues) == {"d2:q2"} and rch.queues["d2:q2"].shadow is not None


# ------------------------------------------------------------ inactivity
@pytest.mark.parametrize(
    "last_activity_s_ago, max_inactivity, want",
    [(None, 5.0, 0.0), (10.0, 5.0, 0.0), (2.0, 5.0, 3.0)],
)
def test_inactivity_left(last_activity_s_ago, max_inactivity, want):
    ch = _channel(MemoryStore(StoreLimits(max_inactivity=max_inactivity)))
    now = time.time_ns()
    ch.last_activity = 0 if last_activity_s_ago is None else now - int(last_activity_s_ago * 1e9)
    assert inactivity_left(ch, now) == pytest.approx(want)


def test_queue_member_positions_as_go_reports_them():
    ch = _channel(_store(), msgs=3)
    a, b = Client("a", "hb"), Client("b", "hb")
    m1 = _subscribe(ch, a, 1, qGroup="q", startPosition=pb.First).sub
    group = m1.group
    assert group is not None
    m1.last_sent = group.last_sent = 3
    m2 = _subscribe(ch, b, 2, qGroup="q", startPosition=pb.First).sub
    assert m2.last_sent == 0  # its own position, not the group's
    take_offline(m1, unsubscribe=False)  # held the group's last message
    assert m2.last_sent == 3  # handed on (and stored) for recovery


def test_offline_durable_and_shadow_keep_stalled():
    ch = _channel(_store(), msgs=1)
    c = Client("c1", "hb")
    plain = _subscribe(ch, c, 1, durableName="d", maxInFlight=1).sub
    queued = _subscribe(ch, c, 2, qGroup="q", durableName="dq", maxInFlight=1).sub
    for s in (plain, queued):
        s.pending = {1: 0.0}
        s.stalled = True
        take_offline(s, unsubscribe=False)
        assert s.stalled and s.client is None
