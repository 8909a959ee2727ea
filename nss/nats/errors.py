"""Errors of the server's NATS connection, apart so the parser can raise one
without importing the connection that uses it."""

from __future__ import annotations


class NatsError(Exception):
    pass


class NoRespondersError(NatsError):
    """The NATS server said nobody listens on the request subject."""


class NotConnectedError(NatsError):
    pass


class MaxPayloadError(NatsError):
    pass


class ProtocolError(NatsError):
    """The bytes from the NATS server are not the NATS protocol.

    The stream cannot be resynchronised after this, so the connection is
    dropped and made again, as nats.go does on a parse error."""
