"""The copy's progress bar: drawn only when asked, and then on one line."""

from __future__ import annotations

import io

from nss.migrate.progress import Progress
from nss.migrate.summary import Digest, rebuild
from nss.migrate.target import unlimited
from nss.pb import spb_pb2 as spb
from nss.stores.memory import MemoryStore


def test_progress_bar_only_when_enabled() -> None:
    out = io.StringIO()
    p = Progress(200, enabled=False, out=out)
    p.add(100)
    p.finish()
    assert out.getvalue() == ""

    p = Progress(200, enabled=True, out=out)
    p.label("orders")
    p.add(100)
    p.finish()
    last = out.getvalue().rstrip("\n").split("\r")[-1]
    assert "100/200 msgs" in last and "50.0%" in last and "orders" in last
    assert out.getvalue().count("\n") == 1


async def test_digest_rebuilt_from_a_later_sequence() -> None:
    """The destination dropped its oldest messages (limits): the expected
    checksum is that of the messages it kept, read again from the source,
    plus those a Raft replay took from the log."""
    src = MemoryStore(unlimited())
    src.init(spb.ServerInfo(ClusterID="c"))
    ms = src.create_channel("a").msgs
    whole, tail = Digest(), Digest()
    for seq in range(1, 11):
        ms.store(seq, seq, b"m%d" % seq)
        whole.add(seq, b"m%d" % seq)
    whole.add(11, b"from-log", keep=True)
    for seq in range(4, 11):
        tail.add(seq, b"m%d" % seq)
    tail.add(11, b"from-log")
    got = await rebuild(ms, whole, 4)
    assert (got.first, got.count, got.hexdigest()) == (4, 8, tail.hexdigest())
