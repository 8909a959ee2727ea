"""Connect requests (protocol.md §5)."""

from __future__ import annotations

import asyncio

import nats.errors
import pytest
from rawproto import (
    DISCOVER,
    INVALID_CLIENT_ID,
    connect_raw,
    raw_connect,
    request,
)
from stanclient import StanClient, StanError

from nss.pb import protocol_pb2 as pb


async def test_connect_response_fields(nss):
    nc = await raw_connect(nss.url)
    try:
        hb = nc.new_inbox()
        resp = await connect_raw(
            nc,
            clientID="me",
            heartbeatInbox=hb,
            protocol=1,
            connID=b"conn-1",
            pingInterval=7,
            pingMaxOut=9,
        )
        assert resp.error == ""
        assert resp.pubPrefix == "_STAN.pub.test-cluster"
        assert resp.subRequests == "_STAN.sub.test-cluster"
        assert resp.unsubRequests == "_STAN.unsub.test-cluster"
        assert resp.closeRequests == "_STAN.close.test-cluster"
        assert resp.subCloseRequests == "_STAN.subclose.test-cluster"
        assert resp.pingRequests == "_STAN.discover.test-cluster.pings"
        # echoed back unchanged
        assert resp.pingInterval == 7
        assert resp.pingMaxOut == 9
        assert resp.protocol == 1
        assert resp.publicKey == ""
    finally:
        await nc.close()


async def test_connect_protocol_zero_gets_no_ping_fields(nss):
    nc = await raw_connect(nss.url)
    try:
        resp = await connect_raw(
            nc,
            clientID="legacy",
            heartbeatInbox=nc.new_inbox(),
            protocol=0,
            pingInterval=7,
            pingMaxOut=9,
        )
        assert resp.error == ""
        assert resp.protocol == 1  # always 1
        assert resp.pingRequests == ""
        assert resp.pingInterval == 0
        assert resp.pingMaxOut == 0
        assert resp.pubPrefix == "_STAN.pub.test-cluster"
        assert resp.subCloseRequests == "_STAN.subclose.test-cluster"
    finally:
        await nc.close()


async def test_legacy_client_can_publish_by_client_id(nss):
    """Protocol 0 clients have no connID: publishes are matched by clientID."""
    nc = await raw_connect(nss.url)
    try:
        resp = await connect_raw(nc, clientID="old", heartbeatInbox=nc.new_inbox())
        assert resp.error == ""
        pm = pb.PubMsg(clientID="old", guid="g1", subject="foo", data=b"x")
        ack = pb.PubAck.FromString(
            await request(nc, resp.pubPrefix + ".foo", pm.SerializeToString())
        )
        assert (ack.guid, ack.error) == ("g1", "")
    finally:
        await nc.close()


async def test_custom_cluster_id_in_subjects(nss_factory):
    srv = nss_factory(cluster_id="my-cluster")
    c = await StanClient.connect(srv.url, "me", cluster_id="my-cluster")
    try:
        assert c.resp.pubPrefix == "_STAN.pub.my-cluster"
        assert c.resp.subRequests == "_STAN.sub.my-cluster"
        assert c.resp.pingRequests == "_STAN.discover.my-cluster.pings"
        await c.publish("foo", b"hello")
        sub = await c.subscribe("foo", start=pb.First)
        assert (await sub.next()).data == b"hello"
    finally:
        await c.close()


async def test_wrong_cluster_id_gets_no_answer(nss):
    with pytest.raises(StanError, match="connect request timeout"):
        await StanClient.connect(nss.url, "me", cluster_id="other-cluster", timeout=0.5)


@pytest.mark.parametrize(
    "client_id",
    ["", "a b", "a.b", "foo*", "foo>", "caf\u00e9", "a/b", "a:b", "tab\there", "x\n"],
)
async def test_invalid_client_ids(nss, client_id):
    nc = await raw_connect(nss.url)
    try:
        resp = await connect_raw(nc, clientID=client_id, heartbeatInbox=nc.new_inbox())
        assert resp.error == INVALID_CLIENT_ID
        # on error only the error field is set
        assert resp.pubPrefix == "" and resp.subRequests == "" and resp.protocol == 0
    finally:
        await nc.close()


@pytest.mark.parametrize("client_id", ["a", "A-Z_0-9", "_", "-", "x" * 200, "me-1_2"])
async def test_valid_client_ids(nss, client_id):
    c = await StanClient.connect(nss.url, client_id)
    await c.publish("foo", b"x")
    await c.close()


async def test_empty_heartbeat_inbox_checked_before_client_id(nss):
    nc = await raw_connect(nss.url)
    try:
        resp = await connect_raw(nc, clientID="me", heartbeatInbox="")
        assert resp.error == "stan: invalid connection request"
        resp = await connect_raw(nc, clientID="bad id", heartbeatInbox="")
        assert resp.error == "stan: invalid connection request"
        # no client was registered
        resp = await connect_raw(nc, clientID="me", heartbeatInbox=nc.new_inbox())
        assert resp.error == ""
    finally:
        await nc.close()


async def test_connect_empty_payload(nss):
    nc = await raw_connect(nss.url)
    try:
        resp = pb.ConnectResponse.FromString(await request(nc, DISCOVER, b""))
        assert resp.error == "stan: invalid connection request"
    finally:
        await nc.close()


async def test_reconnect_same_id_after_close(nss):
    c = await StanClient.connect(nss.url, "me")
    await c.close()
    c2 = await StanClient.connect(nss.url, "me")
    await c2.publish("foo", b"x")
    await c2.close()


async def test_many_clients_share_a_connection(nss):
    nc = await raw_connect(nss.url)
    try:
        clients = await asyncio.gather(
            *(StanClient.connect(nss.url, f"c{i}", nc=nc) for i in range(20))
        )
        await asyncio.gather(*(c.publish("foo", b"%d" % i) for i, c in enumerate(clients)))
        sub = await clients[0].subscribe("foo", start=pb.First)
        msgs = await sub.take(20)
        assert sorted(m.sequence for m in msgs) == list(range(1, 21))
        for c in clients:
            req = pb.CloseRequest(clientID=c.client_id)
            r = pb.CloseResponse.FromString(
                await request(nc, c.resp.closeRequests, req.SerializeToString())
            )
            assert r.error == ""
    finally:
        await nc.close()


async def test_server_sends_empty_heartbeats_to_the_inbox(nss_factory):
    srv = nss_factory("-hbi", "50ms", "-hbt", "500ms")
    c = await StanClient.connect(srv.url, "me")
    got: list[tuple[bytes, str]] = []

    async def on_hb(msg):
        got.append((msg.data, msg.reply))
        await c.nc.publish(msg.reply, b"")

    # a second listener on the same inbox sees exactly what the server sends
    await c.nc.subscribe(c.hb_inbox, cb=on_hb)
    try:
        await asyncio.wait_for(_until(lambda: len(got) >= 3), 5)
        assert all(data == b"" and reply for data, reply in got)
    finally:
        await c.close()


async def _until(cond) -> None:
    while not cond():
        await asyncio.sleep(0.01)


async def test_no_responders_for_unknown_discover_subject(nss):
    nc = await raw_connect(nss.url)
    try:
        with pytest.raises((nats.errors.NoRespondersError, nats.errors.TimeoutError)):
            await request(
                nc,
                "_STAN.discover.nope",
                pb.ConnectRequest(clientID="a", heartbeatInbox="x").SerializeToString(),
                timeout=0.5,
            )
    finally:
        await nc.close()
