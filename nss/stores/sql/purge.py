"""Rows of deleted channels (stores.md §4.6).

Deleting a channel only marks its ``Channels`` row (committed with the
batch); its messages, subscriptions and pending rows go afterwards in the
background, a chunk per transaction so that purging never holds long
locks."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Connection, Engine

from nss.stores.sql.statements import Statements

# rows per statement (as in Go)
PURGE_CHUNK = 1000


def purge_channel(
    engine: Engine, s: Statements, fence: Callable[[Connection], None], cid: int
) -> None:
    """Delete everything of channel ``cid`` (writer thread); ``fence``
    starts each transaction."""
    with engine.begin() as c:
        fence(c)
        subids = [int(r[0]) for r in c.execute(s.channel_sub_ids, {"id": cid}).all()]
    for k in range(0, len(subids), PURGE_CHUNK):
        with engine.begin() as c:
            fence(c)
            c.execute(s.delete_sub_pending, [{"subid": x} for x in subids[k : k + PURGE_CHUNK]])
    while True:
        with engine.begin() as c:
            fence(c)
            upto = c.execute(s.first_seq_chunk, {"id": cid, "n": PURGE_CHUNK}).scalar()
            if not upto:
                break
            c.execute(s.delete_msgs_upto, {"id": cid, "seq": upto})
    with engine.begin() as c:
        fence(c)
        c.execute(s.delete_channel_subs, {"id": cid})
        c.execute(s.delete_channel_row, {"id": cid})
