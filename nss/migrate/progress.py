"""A one-line progress bar on stderr for long copies.

Drawn only when asked (``--progress``) or when stderr is a terminal, so
that logs and CI output do not fill with carriage returns; redrawn at most
a few times a second because a copy moves hundreds of thousands of
messages per second."""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 30
INTERVAL = 0.2


class Progress:
    def __init__(self, total: int, enabled: bool, out: TextIO | None = None) -> None:
        self.total = total
        self.done = 0
        self.enabled = enabled
        self.out = out or sys.stderr
        self.started = time.monotonic()
        self._drawn = 0.0
        self._label = ""

    def label(self, text: str) -> None:
        self._label = text
        self._draw(force=True)

    def add(self, n: int) -> None:
        self.done += n
        self._draw()

    def rate(self) -> float:
        """Messages per second since the start."""
        spent = time.monotonic() - self.started
        return self.done / spent if spent > 0 else 0.0

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._drawn < INTERVAL:
            return
        self._drawn = now
        frac = self.done / self.total if self.total else 1.0
        fill = int(frac * WIDTH)
        bar = "#" * fill + "-" * (WIDTH - fill)
        self.out.write(
            f"\r[{bar}] {frac * 100:5.1f}% {self.done}/{self.total} msgs "
            f"{self.rate():,.0f} msgs/s {self._label[:40]:<40}"
        )
        self.out.flush()

    def finish(self) -> None:
        if self.enabled:
            self._draw(force=True)
            self.out.write("\n")
            self.out.flush()
