"""Copying a recovered store into an empty one through the stores' public
API (``nss.stores.base``), so that every backend writes its own format.

Per channel: the messages with their sequences and timestamps (a channel
cut by limits keeps its first sequence), then each subscription record
(a new ID in the destination) with its last sent sequence and pending
messages; then the registered clients. The messages are checksummed while
they pass (``summary.Digest``) for the verification that follows.
"""

from __future__ import annotations

from nss.migrate.progress import Progress
from nss.migrate.summary import ChannelSummary, Digest, StoreSummary, read_messages
from nss.pb import protocol_pb2 as pb
from nss.pb import spb_pb2 as spb
from nss.stores.base import MIGRATE_MARKER_ID, RecoveredChannel, RecoveredState, Store

# messages stored between two flushes of a destination channel: bounds the
# memory a copy holds and the work a flush does
FLUSH_EVERY = 10_000


async def copy_channel(
    name: str, rc: RecoveredChannel, dst: Store, progress: Progress
) -> tuple[ChannelSummary, Digest]:
    src_ms = rc.channel.msgs
    cs = dst.create_channel(name)
    digest = Digest()
    progress.label(name)
    pending = 0
    parse = pb.MsgProto.FromString
    async for seq, data in read_messages(src_ms):
        # from the message itself: a store's timestamp_of may cost a read
        cs.msgs.store(seq, parse(data).timestamp, data)
        digest.add(seq, data)
        pending += 1
        if pending >= FLUSH_EVERY:
            await cs.msgs.flush()
            progress.add(pending)
            pending = 0
    await cs.msgs.flush()
    progress.add(pending)
    npending = 0
    for rsub in rc.subscriptions:
        st = spb.SubState()
        st.CopyFrom(rsub.sub)
        st.ID = 0
        cs.subs.create_sub(st)
        for seq in sorted(rsub.pending):
            cs.subs.add_seq_pending(st.ID, seq)
        npending += len(rsub.pending)
    await cs.subs.flush()
    # first/last/count/checksum: see run.expect_messages (the destination
    # may have dropped messages by its limits, and a Raft replay may add some)
    return ChannelSummary(subs=len(rc.subscriptions), pending=npending), digest


async def copy_store(
    rs: RecoveredState, dst: Store, progress: Progress
) -> tuple[StoreSummary, dict[str, Digest]]:
    """Everything ``rs`` holds into ``dst`` (initialized, still empty).
    The summary of what was copied, and each channel's running digest (a
    Raft replay may still append messages to it)."""
    summary = StoreSummary()
    digests: dict[str, Digest] = {}
    for name, rc in sorted(rs.channels.items()):
        summary.channels[name], digests[name] = await copy_channel(name, rc, dst, progress)
    for ci in rs.clients:
        if ci.ID != MIGRATE_MARKER_ID:
            dst.add_client(ci)
            summary.clients.append(ci.ID)
    summary.clients.sort()
    await dst.flush()
    return summary, digests
