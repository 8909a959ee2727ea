"""Publish and PubAck (protocol.md §6)."""

from __future__ import annotations

import asyncio
import time

from rawproto import PUB, expect_no_reply, publish_raw, raw_connect, request
from stanclient import StanClient

from nss.pb import protocol_pb2 as pb

INVALID_PUB = "stan: invalid publish request"


async def test_puback_echoes_guid(nss):
    c = await StanClient.connect(nss.url, "me")
    try:
        pm = pb.PubMsg(clientID="me", guid="my-guid", subject="foo", data=b"x", connID=c.conn_id)
        ack = await publish_raw(c.nc, "foo", pm)
        assert ack.guid == "my-guid"
        assert ack.error == ""
    finally:
        await c.close()


async def test_sequences_per_channel_start_at_one(nss):
    c = await StanClient.connect(nss.url, "me")
    try:
        for i in range(3):
            await c.publish("a", b"a%d" % i)
        for i in range(2):
            await c.publish("b", b"b%d" % i)
        await c.publish("a", b"a3")
        sa = await c.subscribe("a", start=pb.First)
        sb = await c.subscribe("b", start=pb.First)
        ma = await sa.take(4)
        mb = await sb.take(2)
        assert [m.sequence for m in ma] == [1, 2, 3, 4]
        assert [m.data for m in ma] == [b"a0", b"a1", b"a2", b"a3"]
        assert [m.sequence for m in mb] == [1, 2]
        assert all(m.subject == "a" for m in ma)
        assert all(m.subject == "b" for m in mb)
    finally:
        await c.close()


async def test_msgproto_fields(nss):
    c = await StanClient.connect(nss.url, "me")
    try:
        sub = await c.subscribe("foo")
        before = time.time_ns()
        pm = pb.PubMsg(
            clientID="me",
            guid="g",
            subject="foo",
            reply="some.reply",
            data=b"payload",
            connID=c.conn_id,
            sha256=b"ignored",
        )
        assert (await publish_raw(c.nc, "foo", pm)).error == ""
        after = time.time_ns()
        m = await sub.next()
        assert m.sequence == 1
        assert m.subject == "foo"
        assert m.reply == "some.reply"
        assert m.data == b"payload"
        assert before - 10**9 <= m.timestamp <= after + 10**9
        assert not m.redelivered
        assert m.redeliveryCount == 0
        assert m.CRC32 == 0
    finally:
        await c.close()


async def test_timestamps_non_decreasing(nss):
    c = await StanClient.connect(nss.url, "me")
    try:
        futs = [c.publish_async("foo", b"%d" % i) for i in range(200)]
        assert await asyncio.gather(*futs) == [""] * 200
        sub = await c.subscribe("foo", start=pb.First)
        msgs = await sub.take(200)
        assert [m.sequence for m in msgs] == list(range(1, 201))
        ts = [m.timestamp for m in msgs]
        assert ts == sorted(ts)
        assert [m.data for m in msgs] == [b"%d" % i for i in range(200)]
    finally:
        await c.close()


async def test_empty_data_is_stored(nss):
    c = await StanClient.connect(nss.url, "me")
    try:
        await c.publish("foo", b"")
        sub = await c.subscribe("foo", start=pb.First)
        m = await sub.next()
        assert (m.sequence, m.data) == (1, b"")
    finally:
        await c.close()


async def test_channel_comes_from_pubmsg_subject_not_nats_subject(nss):
    c = await StanClient.connect(nss.url, "me")
    try:
        sbar = await c.subscribe("bar")
        sfoo = await c.subscribe("foo")
        pm = pb.PubMsg(clientID="me", guid="g", subject="bar", data=b"x", connID=c.conn_id)
        ack = await publish_raw(c.nc, "", pm, subject=f"{PUB}.foo")
        assert ack.error == ""
        m = await sbar.next()
        assert (m.subject, m.sequence, m.data) == ("bar", 1, b"x")
        await sfoo.expect_nothing(0.2)
    finally:
        await c.close()


async def test_publish_without_reply_is_stored(nss):
    c = await StanClient.connect(nss.url, "me")
    try:
        pm = pb.PubMsg(clientID="me", guid="g", subject="foo", data=b"silent", connID=c.conn_id)
        await c.nc.publish(f"{PUB}.foo", pm.SerializeToString())
        await c.publish("foo", b"second")
        sub = await c.subscribe("foo", start=pb.First)
        msgs = await sub.take(2)
        assert [m.data for m in msgs] == [b"silent", b"second"]
    finally:
        await c.close()


async def test_publish_without_guid(nss):
    c = await StanClient.connect(nss.url, "me")
    try:
        pm = pb.PubMsg(clientID="me", subject="foo", data=b"x", connID=c.conn_id)
        ack = await publish_raw(c.nc, "foo", pm)
        assert (ack.guid, ack.error) == ("", INVALID_PUB)
        # nothing stored: the next message gets sequence 1
        await c.publish("foo", b"y")
        sub = await c.subscribe("foo", start=pb.First)
        m = await sub.next()
        assert (m.sequence, m.data) == (1, b"y")
    finally:
        await c.close()


async def test_publish_unknown_client(nss):
    c = await StanClient.connect(nss.url, "me")
    try:
        # unknown clientID, no connID
        pm = pb.PubMsg(clientID="nobody", guid="g1", subject="foo", data=b"x")
        ack = await publish_raw(c.nc, "foo", pm)
        assert (ack.guid, ack.error) == ("g1", INVALID_PUB)
        # known clientID but unknown connID: the connID decides
        pm = pb.PubMsg(clientID="me", guid="g2", subject="foo", data=b"x", connID=b"nope")
        ack = await publish_raw(c.nc, "foo", pm)
        assert (ack.guid, ack.error) == ("g2", INVALID_PUB)
        # known connID with a wrong clientID: the connID decides
        pm = pb.PubMsg(clientID="nobody", guid="g3", subject="foo", data=b"x", connID=c.conn_id)
        ack = await publish_raw(c.nc, "foo", pm)
        assert (ack.guid, ack.error) == ("g3", "")
        # known clientID, no connID
        pm = pb.PubMsg(clientID="me", guid="g4", subject="foo", data=b"x")
        ack = await publish_raw(c.nc, "foo", pm)
        assert (ack.guid, ack.error) == ("g4", "")
    finally:
        await c.close()


async def test_publish_after_close_is_rejected(nss):
    c = await StanClient.connect(nss.url, "me")
    nc = await raw_connect(nss.url)
    try:
        await c.close()
        pm = pb.PubMsg(clientID="me", guid="g", subject="foo", data=b"x", connID=c.conn_id)
        ack = await publish_raw(nc, "foo", pm)
        assert (ack.guid, ack.error) == ("g", INVALID_PUB)
        pm = pb.PubMsg(clientID="me", guid="g", subject="foo", data=b"x")
        ack = await publish_raw(nc, "foo", pm)
        assert (ack.guid, ack.error) == ("g", INVALID_PUB)
    finally:
        await nc.close()


async def test_unknown_fields_are_skipped(nss):
    c = await StanClient.connect(nss.url, "me")
    try:
        pm = pb.PubMsg(clientID="me", guid="g", subject="foo", data=b"x", connID=c.conn_id)
        # field 15 (varint) and field 16 (length-delimited) are unknown to PubMsg
        payload = pm.SerializeToString() + b"\x78\x05" + b"\x82\x01\x03abc"
        ack = pb.PubAck.FromString(await request(c.nc, f"{PUB}.foo", payload))
        assert (ack.guid, ack.error) == ("g", "")
        sub = await c.subscribe("foo", start=pb.First)
        assert (await sub.next()).data == b"x"
    finally:
        await c.close()


async def test_pubacks_in_order_and_all_delivered(nss):
    c = await StanClient.connect(nss.url, "me")
    try:
        sub = await c.subscribe("foo", max_inflight=10000)
        order: list[int] = []
        futs = []
        for i in range(1000):
            f = c.publish_async("foo", b"%d" % i)
            f.add_done_callback(lambda _f, i=i: order.append(i))
            futs.append(f)
        errs = await asyncio.wait_for(asyncio.gather(*futs), 10)
        assert set(errs) == {""}
        assert order == list(range(1000))
        msgs = await sub.take(1000)
        assert [m.sequence for m in msgs] == list(range(1, 1001))
    finally:
        await c.close()


async def test_duplicate_guids_are_not_detected(nss):
    c = await StanClient.connect(nss.url, "me")
    try:
        for _ in range(2):
            pm = pb.PubMsg(clientID="me", guid="same", subject="foo", data=b"x", connID=c.conn_id)
            assert (await publish_raw(c.nc, "foo", pm)).error == ""
        sub = await c.subscribe("foo", start=pb.First)
        assert [m.sequence for m in await sub.take(2)] == [1, 2]
    finally:
        await c.close()


async def test_publish_reply_without_subscriber_does_not_hurt(nss):
    """A PubAck to a reply subject nobody listens on is simply dropped."""
    c = await StanClient.connect(nss.url, "me")
    try:
        pm = pb.PubMsg(clientID="me", guid="g", subject="foo", data=b"x", connID=c.conn_id)
        await c.nc.publish(f"{PUB}.foo", pm.SerializeToString(), reply="nobody.listens")
        await c.publish("foo", b"y")
        sub = await c.subscribe("foo", start=pb.First)
        assert [m.data for m in await sub.take(2)] == [b"x", b"y"]
    finally:
        await c.close()


async def test_ctrl_msg_on_publish_subject_is_ignored(nss):
    """A payload that is not a PubMsg but decodes as a (legacy) CtrlMsg gets no reply."""
    nc = await raw_connect(nss.url)
    try:
        # CtrlMsg{MsgType: ConnClose(2), ServerID: "x"}: field 1 is a varint,
        # which does not fit PubMsg.clientID (a string)
        await expect_no_reply(nc, f"{PUB}.foo", b"\x08\x02\x12\x01x")
    finally:
        await nc.close()


async def test_delivery_precedes_puback(nss):
    """PubAcks go out after delivery to current subscribers was attempted
    (protocol.md §6, §12): on one connection the message comes first."""
    c = await StanClient.connect(nss.url, "me")
    try:
        base = c.nc.new_inbox()
        s = await c.nc.subscribe(base + ".>")
        req = pb.SubscriptionRequest(
            clientID="me", subject="foo", inbox=base + ".data", maxInFlight=100, ackWaitInSecs=30
        )
        resp = pb.SubscriptionResponse.FromString(
            await request(c.nc, c.resp.subRequests, req.SerializeToString())
        )
        assert resp.error == ""
        for i in range(3):
            pm = pb.PubMsg(
                clientID="me", guid=f"g{i}", subject="foo", data=b"x", connID=c.conn_id
            )
            await c.nc.publish(f"{PUB}.foo", pm.SerializeToString(), reply=base + ".ack")
        got = []
        for _ in range(6):
            m = await s.next_msg(timeout=2)
            got.append(m.subject.rsplit(".", 1)[1])
        assert got.count("data") == 3 and got.count("ack") == 3
        # the k-th PubAck comes after (at least) k deliveries
        acks = datas = 0
        for kind in got:
            if kind == "ack":
                acks += 1
                assert datas >= acks, got
            else:
                datas += 1
    finally:
        await c.close()
