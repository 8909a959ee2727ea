"""``/metrics``: Prometheus exposition of the streaming server (beyond Go).

A custom collector reads the server's state when Prometheus scrapes, so the
message path pays nothing for metrics (no counters to bump per message: the
server already keeps in/out totals, the I/O path its batch counts).

Metric names follow prometheus-nats-exporter's streaming collector
(``nss_chan_*``, ``nss_server_*``) so dashboards built for a Go server fed
through the exporter keep working; the ``server`` label the exporter adds
is left to Prometheus' own ``instance`` label. nss-only series (in/out
traffic, pending and redelivered messages, I/O batching, FT state, store
flush latency) use the same prefix.

This module imports prometheus_client at import time; the HTTP glue imports
it lazily, on the first scrape, to keep start-up fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.utils import floatToGoString

from nss.options import VERSION
from nss.server.monitor import endpoints as monitor
from nss.server.monitor.histogram import LatencyHistogram
from nss.server.state import ServerState
from nss.stores.base import StoreError

if TYPE_CHECKING:
    from nss.server.monitor.view import ServerView

# Every state /streaming/serverz can report: a one-hot gauge over all of
# them lets alerts match on a value instead of on a label appearing.
STATES = tuple(ServerState)

_SUB_LABELS = ["channel", "client_id", "inbox", "queue_name", "is_durable", "is_offline"]


def _bool(v: bool) -> str:
    return "true" if v else "false"


class StanCollector:
    """Builds every nss metric from the server's state at scrape time."""

    def __init__(self, server: ServerView) -> None:
        self.server = server

    def describe(self) -> list[Metric]:
        # Nothing to pre-describe: avoids a collect() at registration time,
        # before the server has state to read.
        return []

    def collect(self) -> Iterator[Metric]:
        s = self.server
        yield from self._server_metrics(s)
        yield from self._channel_metrics(s)
        hist = getattr(s.io, "flush_latency", None) if s.io is not None else None
        if isinstance(hist, LatencyHistogram):
            buckets = [(floatToGoString(b), n) for b, n in hist.cumulative()]
            yield HistogramMetricFamily(
                "nss_store_flush_seconds",
                "Latency of store flushes by the I/O path",
                buckets=buckets,
                sum_value=hist.sum,
            )

    @staticmethod
    def _server_metrics(s: ServerView) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "nss_server_info",
            "Server information (value is always 1)",
            labels=["cluster_id", "server_id", "version", "go_version", "state", "role"],
        )
        info.add_metric(
            [s.info.ClusterID, s.server_id, VERSION, monitor.RUNTIME_VERSION, s.state, ""], 1
        )
        yield info

        state = GaugeMetricFamily(
            "nss_server_state", "Server state (1 for the current one)", labels=["state"]
        )
        for name in STATES:
            state.add_metric([name], 1.0 if s.state == name else 0.0)
        yield state

        yield GaugeMetricFamily(
            "nss_server_start_time_seconds", "Server start time (Unix epoch)", value=s.start_time
        )
        yield CounterMetricFamily(
            "nss_ft_takeovers",
            "Times this server became the FT active server after a standby period",
            value=getattr(s, "ft_takeovers", 0),
        )
        ft = getattr(s, "ft", None)
        yield CounterMetricFamily(
            "nss_ft_heartbeats_seen",
            "FT heartbeats heard from other members of the group (0 outside FT mode)",
            value=ft.heartbeats_seen if ft is not None else 0,
        )
        yield GaugeMetricFamily(
            "nss_server_clients", "Registered clients", value=len(s.clients.by_id)
        )
        channels = monitor._channels(s)
        yield GaugeMetricFamily("nss_server_channels", "Channels", value=len(channels))
        yield GaugeMetricFamily(
            "nss_server_subscriptions",
            "Subscriptions (online, offline durables, offline durable queue groups)",
            value=monitor.num_subs(s),
        )
        try:
            count, size = monitor.msgs_state(s)
        except StoreError:
            count = size = 0
        # gauges (stores drop messages at their limits) under the exporter's names
        yield GaugeMetricFamily("nss_server_msgs_total", "Messages in the store", value=count)
        yield GaugeMetricFamily("nss_server_bytes_total", "Bytes in the store", value=size)

        d = s.deliverer
        yield CounterMetricFamily("nss_server_in_msgs", "Messages published", value=s.in_msgs)
        yield CounterMetricFamily(
            "nss_server_in_bytes", "Bytes of published messages", value=s.in_bytes
        )
        yield CounterMetricFamily(
            "nss_server_out_msgs",
            "Messages sent to subscribers (redeliveries included)",
            value=d.out_msgs if d is not None else 0,
        )
        yield CounterMetricFamily(
            "nss_server_out_bytes",
            "Bytes sent to subscribers",
            value=d.out_bytes if d is not None else 0,
        )
        yield CounterMetricFamily(
            "nss_server_redelivered_msgs",
            "Messages redelivered after AckWait",
            value=d.redelivered if d is not None else 0,
        )
        pending = sum(
            len(sub.pending) for ch in channels.values() for sub in monitor.channel_subs(ch)
        )
        yield GaugeMetricFamily(
            "nss_server_pending_msgs", "Messages sent and not acknowledged yet", value=pending
        )
        io = s.io
        yield CounterMetricFamily(
            "nss_io_batches", "Batches committed by the I/O path", value=getattr(io, "batches", 0)
        )
        yield CounterMetricFamily(
            "nss_io_batched_msgs",
            "Messages committed in I/O batches (divide by nss_io_batches for the mean size)",
            value=getattr(io, "batched_msgs", 0),
        )

    @staticmethod
    def _channel_metrics(s: ServerView) -> Iterator[Metric]:
        lbl = ["channel"]
        msgs = GaugeMetricFamily("nss_chan_msgs_total", "Messages in the channel", labels=lbl)
        size = GaugeMetricFamily("nss_chan_bytes_total", "Bytes in the channel", labels=lbl)
        first = GaugeMetricFamily("nss_chan_first_seq", "First sequence", labels=lbl)
        last = GaugeMetricFamily("nss_chan_last_seq", "Last sequence", labels=lbl)
        nsubs = GaugeMetricFamily(
            "nss_chan_subscriptions", "Subscriptions (as subs_count)", labels=lbl
        )
        cpend = GaugeMetricFamily(
            "nss_chan_pending_msgs", "Unacknowledged messages over all subscriptions", labels=lbl
        )
        last_sent = GaugeMetricFamily(
            "nss_chan_subs_last_sent", "Last message sent", labels=_SUB_LABELS
        )
        spend = GaugeMetricFamily(
            "nss_chan_subs_pending_count", "Pending message count", labels=_SUB_LABELS
        )
        inflight = GaugeMetricFamily(
            "nss_chan_subs_max_inflight", "Max in flight message count", labels=_SUB_LABELS
        )
        stalled = GaugeMetricFamily(
            "nss_chan_subs_stalled", "1 when MaxInflight is reached", labels=_SUB_LABELS
        )
        for name, ch in sorted(monitor._channels(s).items()):
            try:
                m, b = ch.msgs.state()
                f, la = ch.msgs.first_sequence(), ch.msgs.last_sequence()
            except StoreError:
                continue
            msgs.add_metric([name], m)
            size.add_metric([name], b)
            first.add_metric([name], f)
            last.add_metric([name], la)
            subs = monitor.channel_subs(ch)
            nsubs.add_metric([name], len(subs))
            cpend.add_metric([name], sum(len(x.pending) for x in subs))
            for sub in subs:
                z: dict[str, Any] = monitor.subscriptionz(sub)
                labels = [
                    name,
                    z["client_id"],
                    z["inbox"],
                    z.get("queue_name", ""),
                    _bool(z["is_durable"]),
                    _bool(z["is_offline"]),
                ]
                last_sent.add_metric(labels, z["last_sent"])
                spend.add_metric(labels, z["pending_count"])
                inflight.add_metric(labels, z["max_inflight"])
                stalled.add_metric(labels, 1.0 if z["is_stalled"] else 0.0)
        yield from (msgs, size, first, last, nsubs, cpend, last_sent, spend, inflight, stalled)


def make_registry(server: ServerView) -> CollectorRegistry:
    """A private registry (not prometheus_client's global one, so tests and
    embedders can run several servers in one process) with the nss
    collector plus the standard process/platform/GC collectors."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(StanCollector(server))  # type: ignore[arg-type]
    ProcessCollector(registry=reg)
    PlatformCollector(registry=reg)
    GCCollector(registry=reg)
    return reg


def render(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """Exposition in the format the scraper asked for (Prometheus text or
    OpenMetrics), and its content type."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
