"""The one error the embedded NATS server reports to nss."""

from __future__ import annotations

__all__ = ["NATSServerError"]


class NATSServerError(Exception):
    """The embedded NATS server could not be found, started or kept running.

    ``port_in_use`` lets the caller special-case the most common start-up
    failure; ``last_lines`` keeps the child's final output for diagnostics
    without cluttering the one-line message that ends up in
    ``Failed to start: <error>``.
    """

    def __init__(
        self,
        message: str,
        *,
        port_in_use: bool = False,
        returncode: int | None = None,
        last_lines: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.port_in_use = port_in_use
        self.returncode = returncode
        self.last_lines = last_lines
