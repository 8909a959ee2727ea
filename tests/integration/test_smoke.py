from stanclient import StanClient

from nss.pb import protocol_pb2 as pb


async def test_publish_subscribe_roundtrip(nss):
    c = await StanClient.connect(nss.url, "me")
    for i in range(3):
        await c.publish("foo", b"m%d" % i)
    sub = await c.subscribe("foo", start=pb.First)
    msgs = await sub.take(3)
    assert [m.data for m in msgs] == [b"m0", b"m1", b"m2"]
    assert [m.sequence for m in msgs] == [1, 2, 3]
    await c.publish("foo", b"live")
    m = await sub.next()
    assert (m.sequence, m.data) == (4, b"live")
    await sub.unsubscribe()
    await c.close()
