"""Replaying a Go clustered node's Raft state onto a store: what the Go
server's FSM does with each committed operation (clients, subscriptions,
their sent and acknowledged sequences), done with nss's own subscription
lifecycle (``nss.server.core``) so that the result is exactly what nss
would have built serving the same requests.

In clustered mode the Go server writes messages to its FILE store as it
applies them, but keeps clients and subscriptions only in the Raft log and
its snapshots. The messages are copied first (``nss.migrate.copy``); this
module then applies the newest snapshot and every later log entry, and
finally writes every subscription's last sent sequence and pending
messages into the destination store.

Facts from the Go server (v0.25.6, clustering.go / snapshot.go): a
``Publish`` batch holds one channel's messages; ``Connect`` registers a
client (``Refresh``: the old one is closed first); ``Disconnect`` closes a
client, dropping its plain subscriptions and taking its durables off line;
``Subscribe`` runs the subscribe request with the leader's ack inbox;
``RemoveSubscription``/``CloseSubscription`` unsubscribe or close the
subscription found by ack inbox (or inbox); ``SendAndAck`` lists, for the
subscription with that ack inbox, sequences sent (now pending, and its
last sent) and sequences acknowledged; ``DeleteChannel`` deletes one.
Operations carrying a channel ID older than the channel's current one
belong to a deleted incarnation and are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nss.migrate.raft.log import LOG_COMMAND, RaftLog, RaftLogError
from nss.migrate.summary import Digest
from nss.pb import protocol_pb2 as pb
from nss.pb import spb_pb2 as spb
from nss.server.core.channels import ChannelRegistry
from nss.server.core.clients import ClientRegistry, client_info
from nss.server.core.model import Channel, Client
from nss.server.core.recovery import restore_sub
from nss.server.core.subscriptions import attach, create_or_resume, find_by_inbox, take_offline
from nss.stores.base import MsgStore, Store, StoreError

Op = spb.RaftOperation


class AsOf:
    """A channel's messages as they stood when a replayed subscribe was
    applied: the store holds the final state, but a start position (new
    only, last received, by time) is relative to the last sequence then."""

    def __init__(self, ms: MsgStore, last: int) -> None:
        self._ms = ms
        self._last = last

    def first_sequence(self) -> int:
        if self._last == 0:
            return 0
        return min(self._ms.first_sequence() or 1, self._last)

    def last_sequence(self) -> int:
        return self._last

    def get_sequence_from_timestamp(self, ts: int) -> int:
        if self._last == 0:
            return 0
        return min(self._ms.get_sequence_from_timestamp(ts), self._last + 1)


@dataclass
class ReplayReport:
    snapshot_index: int = 0
    entries: int = 0
    applied: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    messages_added: int = 0
    warnings: list[str] = field(default_factory=list)


class Replayer:
    def __init__(self, store: Store, digests: dict[str, Digest], log: Any) -> None:
        self.store = store
        self.digests = digests
        self.log = log
        self.clients = ClientRegistry()
        self.channels = ChannelRegistry(store)
        for name, cs in store.channels.items():
            self.channels.add(Channel(name, cs))
        # per channel: the last sequence published so far in the replay
        self.last: dict[str, int] = {}
        self.ids: dict[str, int] = {}
        self.report = ReplayReport()
        self._now = 0

    # -- driver -------------------------------------------------------------

    def run(self, raft: RaftLog) -> ReplayReport:
        self.ids = raft.channel_ids()
        snap = raft.latest_snapshot()
        after = 0
        if snap is not None:
            self._restore(snap.state)
            after = self.report.snapshot_index = snap.index
        first = raft.first_index()
        if first > after + 1:
            raise RaftLogError(
                f"the Raft log starts at index {first} but no snapshot covers the "
                f"entries before it (newest snapshot: {after or 'none'})"
            )
        for e in raft.entries(after):
            self.report.entries += 1
            if e.type != LOG_COMMAND or not e.data:
                continue
            if e.appended_at_ns:
                self._now = e.appended_at_ns
            self.apply(e.operation())
        return self.report

    def apply(self, op: spb.RaftOperation) -> None:
        name = Op.Type.Name(op.OpType) if op.OpType in Op.Type.values() else str(op.OpType)
        handler = {
            Op.Publish: self._publish,
            Op.Connect: self._connect,
            Op.Disconnect: self._disconnect,
            Op.Subscribe: self._subscribe,
            Op.RemoveSubscription: self._unsubscribe,
            Op.CloseSubscription: self._unsubscribe,
            Op.SendAndAck: self._sent_and_ack,
            Op.DeleteChannel: self._delete_channel,
        }.get(op.OpType)
        if handler is None:
            raise RaftLogError(f"unknown Raft operation type {op.OpType}")
        if handler(op) is False:
            self.report.skipped += 1
        else:
            self.report.applied[name] = self.report.applied.get(name, 0) + 1

    # -- snapshot -----------------------------------------------------------

    def _restore(self, snap: spb.RaftSnapshot) -> None:
        for ci in snap.Clients:
            self._register(ci)
        for sc in snap.Channels:
            if self._stale(sc.Channel, sc.ChannelID):
                continue
            ch = self._channel(sc.Channel)
            self.last[ch.name] = max(self.last.get(ch.name, 0), sc.Last)
            for ss in sc.Subscriptions:
                st = spb.SubState()
                st.CopyFrom(ss.State)
                st.ID = 0
                ch.subs_store.create_sub(st)  # pending ones are written at the end
                restore_sub(self.clients, ch, st, set(ss.AcksPending))

    # -- operations (False: skipped) ------------------------------------------

    def _publish(self, op: spb.RaftOperation) -> bool:
        msgs = op.PublishBatch.Messages
        if not msgs or self._stale(msgs[0].subject, op.ChannelID):
            return False
        ch = self._channel(msgs[0].subject)
        for m in msgs:
            self.last[ch.name] = max(self.last.get(ch.name, 0), m.sequence)
            if m.sequence > ch.msgs.last_sequence():
                # committed in the log but not (yet) in the node's FILE store
                data = m.SerializeToString()
                ch.msgs.store(m.sequence, m.timestamp, data)
                self.digests.setdefault(ch.name, Digest()).add(m.sequence, data, keep=True)
                self.report.messages_added += 1
        return True

    def _register(self, ci: spb.ClientInfo) -> bool:
        if self.clients.get(ci.ID) is not None:
            return False
        self.clients.add(Client.from_info(ci))
        self.store.add_client(ci)
        return True

    def _connect(self, op: spb.RaftOperation) -> bool:
        req = op.ClientConnect.Request
        if op.ClientConnect.Refresh:
            self._close_client(req.clientID)
        return self._register(client_info(req))

    def _disconnect(self, op: spb.RaftOperation) -> bool:
        return self._close_client(op.ClientDisconnect.clientID)

    def _close_client(self, client_id: str) -> bool:
        client = self.clients.remove(client_id)
        if client is None:
            return False
        self.store.delete_client(client_id)
        for sub in list(client.subs):
            take_offline(sub, unsubscribe=False)
        return True

    def _subscribe(self, op: spb.RaftOperation) -> bool:
        req: pb.SubscriptionRequest = op.Sub.Request
        if self._stale(req.subject, op.ChannelID):
            return False
        client = self.clients.get(req.clientID)
        if client is None:
            self._warn(f"subscription on {req.subject!r} of unknown client {req.clientID!r}")
            return False
        ch = self._channel(req.subject)
        real = ch.msgs
        ch.msgs = AsOf(real, self.last.get(ch.name, 0))  # type: ignore[assignment]
        try:
            created = create_or_resume(ch, client, req, op.Sub.AckInbox, now_ns=self._now or None)
        except (ValueError, StoreError) as e:
            # the Go server refused it the same way: nothing was made
            self._warn(f"subscription on {req.subject!r} of {req.clientID!r}: {e}")
            return False
        finally:
            ch.msgs = real
        attach(created.sub, client)
        return True

    def _unsubscribe(self, op: spb.RaftOperation) -> bool:
        req = op.Unsub
        ch = self.channels.get(req.subject)
        sub = find_by_inbox(ch, req.inbox) if ch is not None else None
        if sub is None or sub.client is None or sub.client.id != req.clientID:
            return False
        take_offline(sub, unsubscribe=op.OpType == Op.RemoveSubscription)
        return True

    def _sent_and_ack(self, op: spb.RaftOperation) -> bool:
        ssa = op.SubSentAck
        ch = self.channels.get(ssa.Channel)
        sub = ch.by_ack.get(ssa.AckInbox) if ch is not None else None
        if sub is None:
            return False
        for seq in ssa.Sent:
            sub.last_sent = max(sub.last_sent, seq)
            if sub.group is not None:
                sub.group.last_sent = max(sub.group.last_sent, seq)
            sub.pending[seq] = 0.0
        for seq in ssa.Ack:
            sub.pending.pop(seq, None)
        sub.stalled = len(sub.pending) >= sub.max_inflight
        return True

    def _delete_channel(self, op: spb.RaftOperation) -> bool:
        name = op.Channel
        ch = self.channels.get(name)
        if ch is None or self._stale(name, op.ChannelID):
            return False
        for sub in ch.all_subs():
            if sub.client is not None and sub in sub.client.subs:
                sub.client.subs.remove(sub)
        self.channels.remove(name)
        self.store.delete_channel(name)
        self.digests.pop(name, None)
        self.last.pop(name, None)
        return True

    # -- helpers --------------------------------------------------------------

    def _stale(self, name: str, channel_id: int) -> bool:
        """An operation on an incarnation of the channel that was deleted
        since (the log keeps them until compaction)."""
        if not channel_id:
            return False
        current = self.ids.get(name)
        if current is None:
            return self.channels.get(name) is None
        return channel_id != current

    def _channel(self, name: str) -> Channel:
        ch, _ = self.channels.lookup_or_create(name)
        return ch

    def _warn(self, text: str) -> None:
        self.report.warnings.append(text)
        self.log(f"warning: {text}")

    # -- the end ------------------------------------------------------------

    async def persist(self) -> dict[str, tuple[int, int]]:
        """Write every subscription's final position and pending messages;
        per channel (subscriptions, pending messages) for the verification."""
        out: dict[str, tuple[int, int]] = {}
        for name, ch in self.channels.channels.items():
            subs = ch.all_subs()
            npending = 0
            for sub in subs:
                ch.subs_store.update_sub(sub.to_state())
                for seq in sorted(sub.pending):
                    ch.subs_store.add_seq_pending(sub.id, seq)
                npending += len(sub.pending)
            out[name] = (len(subs), npending)
            await ch.msgs.flush()
            await ch.subs_store.flush()
        await self.store.flush()
        return out

    def client_ids(self) -> list[str]:
        return sorted(self.clients.by_id)
