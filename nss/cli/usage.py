"""The ``-h`` and ``--help_tls`` texts."""

from __future__ import annotations

from nss.options import VERSION

__all__ = ["PROG", "tls_help", "usage"]

PROG = "nss"


def usage() -> str:
    """Usage text, grouped like the Go server's help but worded for nss."""
    return _USAGE


def tls_help() -> str:
    """Text for ``--help_tls``."""
    return _TLS_HELP


_USAGE = f"""\
Usage: {PROG} [options]

{PROG} is a Python server speaking the NATS Streaming (STAN) protocol, a
drop-in replacement for nats-streaming-server {VERSION}. Flags take one or
two dashes; a value follows after a space or '='. Boolean flags take no
value or an attached one: -file_sync=false (not -file_sync false).

Streaming Server Options:
  -cid, --cluster_id <string>       Cluster ID clients connect to (default: test-cluster)
  -st,  --store <string>            Store type: MEMORY, FILE or SQL (default: MEMORY)
        --dir <string>              Root directory of a FILE store
  -mc,  --max_channels <int>        Maximum number of channels, 0 for no limit (default: 100)
  -msu, --max_subs <int>            Max subscriptions per channel, 0 for no limit (default: 1000)
  -mm,  --max_msgs <int>            Maximum messages per channel, 0 for no limit (default: 1000000)
  -mb,  --max_bytes <size>          Maximum bytes per channel, 0 for no limit (default: 1024000000)
                                    (sizes accept suffixes: 1KB, 10MB, 1GB, ...)
  -ma,  --max_age <duration>        Maximum age of messages, 0 for no limit (e.g. 24h, 30m)
  -mi,  --max_inactivity <duration> Delete a channel after this long without messages
                                    or subscriptions, 0 to never delete
  -ns,  --nats_server <string>      Use this external NATS server (URL or comma-separated
                                    list) instead of starting an embedded one
  -sc,  --stan_config <string>      Streaming configuration file
  -hbi, --hb_interval <duration>    Interval between heartbeats sent to clients (default: 30s)
  -hbt, --hb_timeout <duration>     How long to wait for a heartbeat reply (default: 10s)
  -hbf, --hb_fail_count <int>       Failed heartbeats tolerated before a client is
                                    closed (default: 10)
        --ft_group <string>         Run in fault tolerance mode within this group
                                    (alias: --ft_group_name)
        --ft_hb_interval <duration> FT heartbeat interval of the active (default: 1s)
        --ft_hb_missed_interval <duration>
                                    Silence after which a standby tries the lock
                                    (default: 1.25s)
  -sl,  --signal <cmd>[=<pid>]      Send a signal to a running server and exit:
                                    stop, quit, reopen, reload, ldm, term
        --encrypt                   Encrypt message payloads at rest
        --encryption_cipher <string> AES or CHACHA (default: chosen automatically)
        --encryption_key <string>   Encryption key; implies --encrypt
                                    (NATS_STREAMING_ENCRYPTION_KEY takes precedence)
        --replace_durable           A second subscription with the name of an active
                                    durable replaces it instead of being rejected

Streaming Server Clustering Options:
        --clustered                 Raft based clustering (not supported by {PROG})
        --cluster_node_id <string>  ID of this node
        --cluster_bootstrap         Bootstrap the cluster with this node
        --cluster_peers <string>    Comma-separated list of the other node IDs
        --cluster_log_path <string> Directory of the Raft logs
        --cluster_log_cache_size <int> Raft log entries kept in memory (default: 512)
        --cluster_log_snapshots <int>  Raft snapshots to keep (default: 2)
        --cluster_trailing_logs <int>  Raft log entries kept after a snapshot (default: 10240)
        --cluster_sync              Fsync the Raft log on each append
        --cluster_raft_logging        Log Raft internals
        --cluster_allow_add_remove_node        Accept node add/remove requests

Streaming Server File Store Options:
        --file_compact_enabled          Compact files when enough is deleted (default: true)
        --file_compact_frag <int>       Fragmentation percentage triggering compaction (default: 50)
        --file_compact_interval <int>   Seconds between two compactions (default: 300)
        --file_compact_min_size <size>  Do not compact files smaller than this (default: 1MB)
        --file_buffer_size <size>       Write buffer size (default: 2MB)
        --file_crc                      Check CRCs when reading records (default: true)
        --file_crc_poly <int>           CRC-32 polynomial (default: 3988292384)
        --file_sync                     Fsync when flushing (default: true)
        --file_slice_max_msgs <int>     Messages per file slice, 0 for no limit
        --file_slice_max_bytes <size>   Bytes per file slice, 0 for no limit (default: 64MB)
        --file_slice_max_age <duration> Time span of a file slice, 0 for no limit
        --file_slice_archive_script <string> Script run on a slice before it is removed
        --file_fds_limit <int>          Soft limit on open file descriptors, 0 for none
        --file_parallel_recovery <int>  Channels recovered in parallel (default: 1)
        --file_truncate_bad_eof         Truncate a file with an unexpected end on recovery
                                        (some data may be lost)
        --file_read_buffer_size <size>  Read-ahead buffer size, 0 to disable (default: 2MB)
        --file_auto_sync <duration>     Periodic fsync interval, 0 to disable (default: 1m)

Streaming Server SQL Store Options:
        --sql_driver <string>           mysql or postgres
        --sql_source <string>           Data source name of the database
        --sql_no_caching                Always go to the database instead of caching
        --sql_max_open_conns <int>      Maximum open connections, 0 for no limit
        --sql_bulk_insert_limit <int>   Rows per multi-row INSERT (5 or more enables it)
        --sql_lock_steal_after <duration>
                                        FT: take the SQL store lock after its owner
                                        stopped refreshing it this long (default: 1.5s)
        --sql_schema <name>             Print a schema script and exit: postgres, mysql
                                        or drop_postgres ({PROG} only), e.g.
                                        {PROG} --sql_schema postgres | psql -d nss

Streaming Server TLS Options:
        -secure                         Use TLS towards the NATS server without any
                                        certificate configuration
        -tls_client_key <string>        Client key for the connection to NATS
        -tls_client_cert <string>       Client certificate for the connection to NATS
        -tls_client_cacert <string>     CA used to verify the NATS server certificate

Streaming Server Logging Options:
  -SD,  --stan_debug                Streaming debug log lines
  -SV,  --stan_trace                Streaming trace log lines
  -SDV                              Both of the above (-SDV=false turns both off)
        --syslog_name <string>      Event source name (Windows event log)
        --log_json                  Write the log as JSON lines ({PROG} only)

NATS Server Options:
  -a,  --addr, --net <host>         Client listen address (default: 0.0.0.0)
  -p,  --port <int>                 Client port, -1 for a random one (default: 4222)
  -n,  --name, --server_name <string> Name of the NATS server
       --client_advertise <string>  Client URL advertised to other servers
  -m,  --http_port <int>            HTTP monitoring port (NATS and streaming endpoints)
  -ms, --https_port <int>           HTTPS monitoring port
  -c,  --config <string>            NATS configuration file
  -t                                Check the configuration (flags, files, limits)
                                    and exit: 0 and "configuration OK", or 1
  -P,  --pid <string>               Write the process id to this file
       --ports_file_dir <string>    Write a ports file in this directory
       --nats_server_bin <path>     nats-server binary to run ({PROG} only; default:
                                    the bundled one, else nats-server from PATH)

Logging Options:
  -l,  --log <string>               Log to this file instead of stderr
       --log_size_limit <int>       Size at which the log file is rotated
  -T,  --logtime                    Prefix lines with a timestamp (default: true)
       --logtime_utc                Use UTC for the timestamps
  -s,  --syslog                     Log to syslog (NATS server)
  -r,  --remote_syslog <string>     Remote syslog address, e.g. udp://127.0.0.1:514
  -D,  --debug                      Debug log lines
  -V,  --trace                      Trace log lines
  -VV                               Verbose trace (includes the system account)
  -DV                               Debug and trace
  -DVV                              Debug and verbose trace
       --max_traced_msg_len <int>   Truncate traced payloads to this length, 0 for none

Authorization Options:
       --user <string>              User required from clients (also used by the
                                    streaming server to connect)
       --pass <string>              Password required from clients
       --auth <string>              Token required from clients

TLS Options:
       --tls                        Enable TLS for clients
       --tlscert <string>           Server certificate
       --tlskey <string>            Server private key
       --tlsverify                  Require and verify client certificates
       --tlscacert <string>         CA used to verify client certificates
       --help_tls                   Explain the TLS configuration

NATS Clustering Options:
       --routes <url,...>           Routes to solicit (requires --cluster)
       --cluster, --cluster_listen <url> Listen for routes on this URL
       --cluster_advertise <string> Route URL advertised to other servers
       --no_advertise               Do not advertise known cluster URLs to clients
       --connect_retries <int>      Connection attempts for implicit routes
       --cluster_name <string>      Name of the NATS cluster

Common Options:
  -h,  --help                       Show this text and exit
  -v,  --version                    Show the version and exit
       --profile <int>              Profiling HTTP port
  -js, --jetstream, -sd, --store_dir  Accepted for compatibility (JetStream is not
                                    used by the streaming server)
"""

_TLS_HELP = """\
TLS for the embedded NATS server is enabled with --tls, --tlscert and --tlskey
(plus --tlsverify and --tlscacert to require client certificates), or with a
tls block in the NATS configuration file, for instance:

    tls {
        cert_file: "/path/to/server-cert.pem"
        key_file:  "/path/to/server-key.pem"
        ca_file:   "/path/to/ca.pem"
        verify:    true
    }

The block is interpreted by the nats-server binary; run
`nats-server --help_tls` for the cipher suites and curve preferences it knows.

The streaming server's own connections to NATS use -secure, -tls_client_cert,
-tls_client_key and -tls_client_cacert.
"""
