"""Checks of a served store against a Go fixture's ``manifest.json`` (see
tests/fixtures/go-v0.25.6/README.md: what the manifest says, and what a
server must show), through a real client."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from stanclient import StanClient

from nss.pb import protocol_pb2 as pb

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "go-v0.25.6"


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name / "manifest.json").read_text())


async def check_channels(url: str, manifest: dict[str, Any], publish_next: bool = True) -> None:
    """Every channel holds exactly the manifest's messages, from its first
    sequence; the next message published gets ``last + 1``."""
    c = await StanClient.connect(url, "manifest-checker", cluster_id=manifest["cluster"])
    try:
        for name, ch in manifest["channels"].items():
            sub = await c.subscribe(name, start=pb.First, max_inflight=10_000)
            msgs = await sub.take(ch["last"] - ch["first"] + 1)
            assert [m.sequence for m in msgs] == list(range(ch["first"], ch["last"] + 1)), name
            assert [hashlib.sha256(m.data).hexdigest() for m in msgs] == ch["sha256"], name
            await sub.expect_nothing(0.1)
            if publish_next:
                await c.publish(name, b"next")
                assert (await sub.next()).sequence == ch["last"] + 1
            await sub.unsubscribe()
    finally:
        await c.close()


async def check_durables(url: str, manifest: dict[str, Any]) -> None:
    """The durable resumes with its unacknowledged messages redelivered,
    then the rest; the durable queue group gets nothing old, then the next
    new message. (Publishes one message on the queue group's channel.)"""
    dur = manifest["durables"][0]
    last = manifest["channels"][dur["channel"]]["last"]
    # the recorded client no longer answers its heartbeat inbox: replaced
    c = await StanClient.connect(url, dur["clientID"], cluster_id=manifest["cluster"], timeout=10)
    try:
        sub = await c.subscribe(dur["channel"], durable=dur["durable"], max_inflight=1000)
        first = await sub.take(len(dur["unacked_sent"]))
        assert sorted(m.sequence for m in first) == dur["unacked_sent"]
        assert all(m.redelivered for m in first)
        rest = await sub.take(last - dur["unacked_sent"][-1])
        assert [m.sequence for m in rest] == list(range(dur["unacked_sent"][-1] + 1, last + 1))
        assert not any(m.redelivered for m in rest)

        q = manifest["queue_durables"][0]
        qs = await c.subscribe(q["channel"], queue=q["group"], durable=q["durable"])
        await qs.expect_nothing(0.3)
        await c.publish(q["channel"], b"new")
        assert (await qs.next()).sequence == q["acked_through"] + 1
    finally:
        await c.close()
