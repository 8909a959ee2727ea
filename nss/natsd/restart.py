"""When a child that was serving dies: restart it, or give up."""

from __future__ import annotations

import collections
import dataclasses

__all__ = ["ExitWindow", "RestartPolicy"]


@dataclasses.dataclass(frozen=True)
class RestartPolicy:
    """What to do when a child that was serving dies on its own.

    It is started again on the same ports after a doubling delay, so that
    clients (nss's own connections included) reconnect to the same address.
    A child that keeps dying is not fixed by restarting it: at the
    ``max_exits``-th exit within ``window`` seconds the supervisor gives up
    and ``on_exit`` tells nss to stop with a fatal line.
    """

    max_exits: int = 5
    window: float = 60.0
    first_delay: float = 0.1
    max_delay: float = 2.0

    def delay(self, exits: int) -> float:
        """Wait before the restart that follows the ``exits``-th exit."""
        return min(self.first_delay * 2 ** max(exits - 1, 0), self.max_delay)


class ExitWindow:
    """The exits that count against a policy: those of the last ``window``
    seconds, so a child that dies once a day is restarted forever."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._times: collections.deque[float] = collections.deque()

    def record(self, now: float) -> int:
        """Count an exit at ``now`` (monotonic); the exits in the window."""
        self._times.append(now)
        while now - self._times[0] > self.window:
            self._times.popleft()
        return len(self._times)
