"""Group commit of the FILE store (``diskio.SyncState``): a flusher that
arrives just after another flusher's fsync finished, before that flusher
resumed to record it, must not spin. Found under sustained load with the Go
load generator: the server locked up at 100 % CPU. Run in a child process,
since a spinning event loop cannot time itself out."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import asyncio
    from nss.stores.file.diskio import SyncState

    async def owner_resumes_later(st):
        await asyncio.sleep(0)  # its wake-up is queued behind the second flusher
        st.synced = st.written

    async def main():
        st = SyncState()
        st.written = 1
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)  # the fsync of write-out 1 has finished
        st._inflight = fut
        st._inflight_gen = 1
        asyncio.create_task(owner_resumes_later(st))
        await st.sync(lambda: [], None)
        assert st.synced == 1 and st._inflight is None
        failed = asyncio.get_running_loop().create_future()
        failed.set_exception(OSError(5, "Input/output error"))
        st.written = 2
        st._inflight = failed
        st._inflight_gen = 2
        try:
            await st.sync(lambda: [], None)
        except OSError:
            assert st.synced == 1  # a failed fsync makes nothing durable
        else:
            raise AssertionError("the failed fsync was not reported")
        print("ok")

    asyncio.run(main())
    """
)


def test_flusher_arriving_after_a_finished_fsync_does_not_spin() -> None:
    try:
        r = subprocess.run(
            [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        raise AssertionError("the second flusher spins (event loop locked up)") from None
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
