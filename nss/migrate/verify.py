"""Verification of a finished copy: the destination is opened afresh (a new
store object, so nothing comes from the copy's caches), recovered, read in
full and compared with what the copy wrote. Only a copy that matches has
its incomplete-copy marker removed."""

from __future__ import annotations

import asyncio

from nss.migrate.summary import StoreSummary, differences, summarize
from nss.migrate.target import Target, open_store
from nss.options import StoreLimits
from nss.stores.base import MIGRATE_MARKER_ID


async def verify_and_seal(
    dst_t: Target, limits: StoreLimits | None, expected: StoreSummary
) -> list[str]:
    """Differences between the destination and ``expected``; when there
    are none, the marker is removed and the store becomes servable."""
    st = open_store(dst_t, limits)
    try:
        rs = await asyncio.to_thread(st.recover)
        found = await summarize(rs)
        diffs = differences(expected, found)
        if not diffs:
            st.delete_client(MIGRATE_MARKER_ID)
            await st.flush()
        return diffs
    finally:
        await st.close()
