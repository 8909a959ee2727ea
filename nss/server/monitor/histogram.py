"""A latency histogram cheap enough for the hot path, read by /metrics."""

from __future__ import annotations

import bisect
from collections.abc import Iterable


class LatencyHistogram:
    """Fixed-bucket latency histogram cheap enough for the hot path.

    ``observe`` is a bisect and three additions, with no Prometheus object
    involved; the /metrics collector reads the counts at scrape time. The
    I/O path can keep one as ``IOPath.flush_latency`` and observe each store
    flush; /metrics then exposes ``nss_store_flush_seconds``.
    """

    __slots__ = ("bounds", "counts", "sum", "count")

    DEFAULT_BOUNDS: tuple[float, ...] = (
        0.0001,
        0.00025,
        0.0005,
        0.001,
        0.0025,
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.25,
        0.5,
        1.0,
        2.5,
    )

    def __init__(self, bounds: Iterable[float] = DEFAULT_BOUNDS) -> None:
        self.bounds = tuple(sorted(bounds))
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        # bisect_left: a value equal to a bound belongs to it (le semantics)
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, cumulative count) pairs ending with +Inf."""
        out: list[tuple[float, int]] = []
        acc = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            acc += n
            out.append((bound, acc))
        return out
