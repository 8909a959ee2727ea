"""The protocol's error strings, exactly as the Go server sends them
(protocol.md §16): clients and their test suites compare them."""

ERR_INVALID_CONN_REQ = "stan: invalid connection request"
ERR_INVALID_CLIENT_ID = (
    "stan: invalid clientID: only alphanumeric and `-` or `_` characters allowed"
)
ERR_CLIENT_REGISTERED = "stan: clientID already registered"
ERR_INVALID_PUB_REQ = "stan: invalid publish request"
ERR_INVALID_SUB_REQ = "stan: invalid subscription request"
ERR_MISSING_CLIENT = "stan: clientID missing"
ERR_INVALID_ACK_WAIT = "stan: invalid ack wait time, should be >= 1s"
ERR_INVALID_MAX_INFLIGHT = "stan: invalid MaxInflight, should be >= 1"
ERR_INVALID_START = "stan: invalid start position"
ERR_INVALID_SUBJECT = "stan: invalid subject"
ERR_UNKNOWN_CLIENT = "stan: unknown clientID"
ERR_INVALID_UNSUB_REQ = "stan: invalid unsubscribe request"
ERR_UNKNOWN_CHANNEL = "stan: unknown channel"
ERR_INVALID_SUB = "stan: invalid subscription"
ERR_INVALID_CLOSE_REQ = "stan: invalid close request"
ERR_CLIENT_REPLACED = "client has been replaced or is no longer registered"
