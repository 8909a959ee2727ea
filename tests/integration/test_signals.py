"""Requests that arrive after SIGTERM/SIGINT are not answered.

The Go server closes its connections as soon as the signal arrives, so a
request sent right after ``kill`` gets no answer; stan.js "subscribe emits
timeout" kills the server and then expects its subscribe request to time
out. nss notes the signal the moment it arrives and ignores protocol
requests from then on, and still exits 0.
"""

from __future__ import annotations

import asyncio
import signal

import nats
import pytest
from stanclient import StanClient

from nss.pb import protocol_pb2 as pb


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_no_answer_after_the_stop_signal(nss, sig):
    c = await StanClient.connect(nss.url, "me")
    req = pb.SubscriptionRequest(
        clientID="me", subject="foo", inbox="_INBOX.x", maxInFlight=1, ackWaitInSecs=30
    ).SerializeToString()
    nss.proc.send_signal(sig)
    with pytest.raises(
        (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.errors.ConnectionClosedError)
    ):
        await c.nc.request(c.resp.subRequests, req, timeout=0.5)
    assert await asyncio.to_thread(nss.proc.wait, 10) == 0
    await c.nc.close()
