"""nss: a NATS Streaming (STAN) server in Python, a drop-in for nats-streaming-server."""

__version__ = "0.1.0"
