"""The server's own NATS client: ``parser`` (the protocol, no I/O),
``connection`` (socket, reconnect, subscriptions, requests) and ``errors``.

Nothing is imported here, so that importing one part never drags in another
and no module can import its way back into a half-initialised package."""
