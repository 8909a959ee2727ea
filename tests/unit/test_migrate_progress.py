"""The copy's progress bar: drawn only when asked, and then on one line."""

from __future__ import annotations

import io

from nss.migrate.progress import Progress
from nss.migrate.summary import Digest


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


def test_digest_can_start_at_a_later_sequence() -> None:
    """The destination may drop its oldest messages (limits): the expected
    checksum is that of the messages it kept, equal to a digest of those
    alone."""
    whole, tail = Digest(), Digest()
    for seq in range(1, 11):
        whole.add(seq, b"m%d" % seq)
        if seq >= 4:
            tail.add(seq, b"m%d" % seq)
    assert whole.result(4) == tail.result() == (7, tail.result()[1])
    assert whole.result()[0] == 10 and whole.result() != tail.result()
    assert Digest().result() == (0, Digest().result(5)[1])
