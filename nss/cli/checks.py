"""Option combinations nss refuses before anything starts.

Run after flags and configuration files were merged (some checks depend on
values only a file may supply); every refusal is a one-line
:class:`~nss.cli.errors.UsageError`.
"""

from __future__ import annotations

from nss.cli.errors import UsageError
from nss.cli.flags import VALID_STORE_TYPES
from nss.options import Options
from nss.units import format_duration, go_quote

__all__ = ["check_cluster_id", "check_supported"]


def check_supported(opts: Options) -> None:
    """Reject option combinations nss cannot honour (yet) or that are invalid.

    Called after flags and (later) configuration files were merged, because
    some checks depend on values a configuration file may supply (e.g. the
    route listen address).  Raises ``UsageError`` with a one-line message.
    """
    st = opts.streaming
    nats = opts.nats
    check_cluster_id(st.cluster_id)
    if nats.routes and not nats.cluster_listen:
        raise UsageError(
            "solicited routes require cluster capabilities, e.g. --cluster"
        )
    store = st.store_type.upper()
    if store not in VALID_STORE_TYPES:
        raise UsageError(f"unsupported store type: {st.store_type}")
    if store == "SQL" and not (st.sql_options.driver and st.sql_options.source):
        raise UsageError("for SQL stores, --sql_driver and --sql_source must be specified")
    if store == "FILE" and not st.file_path:
        raise UsageError("for FILE stores, root directory must be specified")
    if st.partitioning and st.cluster.clustered:
        raise UsageError("stan: channels partitioning in clustering mode is not supported")
    if st.cluster.clustered:
        raise UsageError(
            "Raft clustering (--clustered) is not supported by nss; move a clustered "
            "node's data with nss-migrate (nss-migrate --from file:///path/to/datastore "
            "--raft-log /path/to/raft --to file:///new/datastore or --to "
            "postgresql://user@host/db), then run an FT group (--ft_group): on a FILE "
            "store on shared storage, or on PostgreSQL with a synchronous standby when "
            'there is no shared disk (README, "High availability on PostgreSQL")'
        )
    if st.ft_group:
        if store not in ("FILE", "SQL"):
            raise UsageError("ft: only FILE or SQL stores supported in FT mode")
        if st.ft_hb_interval <= 0 or st.ft_hb_missed_interval < 1.1 * st.ft_hb_interval:
            raise UsageError(
                "ft: --ft_hb_missed_interval must be at least 1.1 x --ft_hb_interval"
            )
    _check_encryption(opts)
    _check_limits(opts)


def _check_encryption(opts: Options) -> None:
    """A missing key or an unknown cipher stops the start (Go's errors,
    with what to do)."""
    from nss.stores.crypto import CryptoConfigError, StoreCrypto

    try:
        StoreCrypto.from_options(opts.streaming)
    except CryptoConfigError as e:
        raise UsageError(str(e)) from None


def check_cluster_id(cluster_id: str) -> None:
    """Refuse a cluster ID that cannot work, before anything starts.

    The ID ends the discovery subject clients publish to
    (``_STAN.discover.<cluster ID>``), so it must be a literal NATS subject:
    a blank would only show as a protocol parse error from the NATS server
    once everything is running, a wildcard token would answer other
    clusters' clients."""
    tokens = cluster_id.split(".")
    if (
        cluster_id
        and all(tokens)
        and not any(c.isspace() or not c.isprintable() for c in cluster_id)
        and "*" not in tokens
        and ">" not in tokens
    ):
        return
    raise UsageError(
        f"invalid cluster ID {go_quote(cluster_id)}: it ends NATS subjects "
        "(_STAN.discover.<cluster ID>), so it must be non-empty, without spaces, "
        "empty tokens (a leading, trailing or double '.') or the wildcards '*' and '>'"
    )


def _check_limits(opts: Options) -> None:
    lim = opts.streaming.store_limits
    ints = (
        ("max channels", lim.max_channels),
        ("max subscriptions", lim.max_subscriptions),
        ("max messages", lim.max_msgs),
        ("max bytes", lim.max_bytes),
    )
    for what, value in ints:
        if value < 0:
            raise UsageError(f"{what} limit cannot be negative ({value})")
    for what, secs in (
        ("max age", lim.max_age),
        ("max inactivity", lim.max_inactivity),
    ):
        if secs < 0:
            raise UsageError(
                f"{what} limit cannot be negative ({format_duration(secs)})"
            )
