"""Every statement of the SQL store, for one dialect (PostgreSQL or MySQL):
the Go server's tables and row shapes (stores.md §4)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.sql.elements import TextClause

# ServerInfo.version of the Go server's SQL store
SQL_VERSION = 1


class Statements:
    """Every statement the store runs, for one dialect. Named parameters;
    SQLAlchemy renders them in the driver's style (``$n``/``%s``)."""

    def __init__(self, postgres: bool) -> None:
        row = "row" if postgres else "`row`"
        self.postgres = postgres

        def t(s: str) -> TextClause:
            return text(s.replace("{row}", row))

        def ins(s: str) -> tuple[TextClause, TextClause]:
            s = s.replace("{row}", row)
            if postgres:
                return text(s), text(s + " ON CONFLICT DO NOTHING")
            return text(s), text(s.replace("INSERT INTO", "INSERT IGNORE INTO", 1))

        self.lock_select = t("SELECT id, tick FROM StoreLock FOR UPDATE")
        self.lock_insert = t("INSERT INTO StoreLock (id, tick) VALUES (:id, :tick)")
        self.lock_update = t("UPDATE StoreLock SET id=:id, tick=:tick")
        self.lock_release = t("UPDATE StoreLock SET id='', tick=0 WHERE id=:id")
        # the fence of a write transaction: the tick moves with every commit
        self.lock_bump = t("UPDATE StoreLock SET tick=tick+1 WHERE id=:id RETURNING tick")
        self.lock_set_tick = t("UPDATE StoreLock SET tick=:tick WHERE id=:id")
        self.lock_peek = t("SELECT id, tick FROM StoreLock")
        # PostgreSQL only: what a (stalled) backend waits for, and what the
        # backends that block it wait for (the first row is its own)
        self.backend_wait = t(
            "SELECT wait_event_type, wait_event FROM pg_stat_activity "
            "WHERE pid=:pid OR pid=ANY(pg_blocking_pids(:pid)) ORDER BY pid<>:pid"
        )
        self.has_server_info = t("SELECT COUNT(uniquerow) FROM ServerInfo")
        self.update_server_info = t(
            "UPDATE ServerInfo SET id=:id, proto=:proto, version=:version WHERE uniquerow=1"
        )
        self.add_server_info = t(
            "INSERT INTO ServerInfo (id, proto, version) VALUES (:id, :proto, :version)"
        )
        self.add_client, self.add_client_idem = ins(
            "INSERT INTO Clients (id, hbinbox, proto) VALUES (:id, :hbinbox, :proto)"
        )
        self.delete_client = t("DELETE FROM Clients WHERE id=:id")
        self.add_channel, self.add_channel_idem = ins(
            "INSERT INTO Channels (id, name, maxmsgs, maxbytes, maxage) "
            "VALUES (:id, :name, :maxmsgs, :maxbytes, :maxage)"
        )
        self.store_msg, self.store_msg_idem = ins(
            "INSERT INTO Messages VALUES (:id, :seq, :timestamp, :size, :data)"
        )
        self.lookup_range = t(
            "SELECT seq, timestamp, data FROM Messages WHERE id=:id AND seq>=:seq "
            "ORDER BY seq LIMIT :n"
        )
        self.meta_range = t(
            "SELECT seq, timestamp, size FROM Messages WHERE id=:id AND seq>=:seq "
            "ORDER BY seq LIMIT :n"
        )
        self.seq_from_time = t(
            "SELECT seq FROM Messages WHERE id=:id AND seq>=:first AND timestamp>=:ts "
            "ORDER BY seq LIMIT 1"
        )
        self.update_maxseq = t("UPDATE Channels SET maxseq=:maxseq WHERE id=:id")
        self.delete_below = t("DELETE FROM Messages WHERE id=:id AND seq<:seq")
        self.delete_above = t("DELETE FROM Messages WHERE id=:id AND seq>:seq")
        self.create_sub, self.create_sub_idem = ins(
            "INSERT INTO Subscriptions (id, subid, proto) VALUES (:id, :subid, :proto)"
        )
        self.update_sub = t("UPDATE Subscriptions SET proto=:proto WHERE id=:id AND subid=:subid")
        self.mark_sub_deleted = t(
            "UPDATE Subscriptions SET deleted=TRUE WHERE id=:id AND subid=:subid"
        )
        self.delete_sub = t("DELETE FROM Subscriptions WHERE id=:id AND subid=:subid")
        self.delete_marked_subs = t("DELETE FROM Subscriptions WHERE id=:id AND deleted=TRUE")
        self.delete_sub_pending = t("DELETE FROM SubsPending WHERE subid=:subid")
        self.sub_update_lastsent = t(
            "UPDATE Subscriptions SET lastsent=:lastsent WHERE id=:id AND subid=:subid"
        )
        self.sub_add_pending, self.sub_add_pending_idem = ins(
            "INSERT INTO SubsPending (subid, {row}, seq) VALUES (:subid, :row, :seq)"
        )
        self.sub_add_pending_row, self.sub_add_pending_row_idem = ins(
            "INSERT INTO SubsPending (subid, {row}, lastsent, pending, acks) "
            "VALUES (:subid, :row, :lastsent, :pending, :acks)"
        )
        self.sub_delete_pending = t("DELETE FROM SubsPending WHERE subid=:subid AND seq=:seq")
        self.sub_delete_pending_row = t("DELETE FROM SubsPending WHERE subid=:subid AND {row}=:row")
        # recovery
        self.recover_server_info = t("SELECT id, proto, version FROM ServerInfo WHERE uniquerow=1")
        self.recover_clients = t("SELECT id, hbinbox, proto FROM Clients")
        self.max_channel_id = t("SELECT COALESCE(MAX(id), 0) FROM Channels")
        self.max_sub_id = t("SELECT COALESCE(MAX(subid), 0) FROM Subscriptions")
        self.channels_list = t("SELECT id, name, maxseq FROM Channels WHERE deleted=FALSE")
        self.deleted_channels = t("SELECT id FROM Channels WHERE deleted=TRUE")
        self.last_seq = t("SELECT COALESCE(MAX(seq), 0) FROM Messages WHERE id=:id")
        self.channel_msgs = t(
            "SELECT COUNT(seq), COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0), "
            "COALESCE(SUM(size), 0) FROM Messages WHERE id=:id"
        )
        self.channel_subs = t(
            "SELECT subid, lastsent, proto, deleted FROM Subscriptions WHERE id=:id"
        )
        self.channel_pending = t(
            "SELECT p.subid, p.{row}, p.seq, p.lastsent, p.pending, p.acks FROM SubsPending p "
            "JOIN Subscriptions s ON s.subid=p.subid "
            "WHERE s.id=:id AND s.deleted=FALSE ORDER BY p.subid, p.{row}"
        )
        self.purge_sub_pending_below = t(
            "DELETE FROM SubsPending WHERE subid=:subid AND (seq > 0 AND seq<:seq)"
        )
        self.channel_limits = t("SELECT maxmsgs, maxbytes, maxage FROM Channels WHERE id=:id")
        self.expire_msgs = t("DELETE FROM Messages WHERE id=:id AND timestamp<=:ts")
        self.msgs_count = t("SELECT COUNT(seq) FROM Messages WHERE id=:id")
        self.seq_floor_max_msgs = t(
            "SELECT MIN(t.seq) FROM (SELECT seq FROM Messages WHERE id=:id "
            "ORDER BY seq DESC LIMIT :n) t"
        )
        self.total_size = t("SELECT COALESCE(SUM(size), 0) FROM Messages WHERE id=:id")
        if postgres:
            self.seq_floor_max_bytes = t(
                "SELECT COALESCE(MIN(seq), 0) FROM (SELECT seq, SUM(size) OVER "
                "(PARTITION BY id ORDER BY seq DESC) AS total FROM Messages WHERE id=:id) t "
                "WHERE t.total<=:n"
            )
        else:
            self.seq_floor_max_bytes = t(
                "SELECT COALESCE(MIN(seq), 0) FROM (SELECT seq, @sum:=@sum+size AS total "
                "FROM Messages JOIN (SELECT @sum:=0) m WHERE id=:id ORDER BY seq DESC) t "
                "WHERE t.total<=:n"
            )
        self.update_channel_limits = t(
            "UPDATE Channels SET maxmsgs=:maxmsgs, maxbytes=:maxbytes, maxage=:maxage WHERE id=:id"
        )
        # channel deletion
        self.delete_channel_fast = t("UPDATE Channels SET deleted=TRUE WHERE id=:id")
        self.channel_sub_ids = t("SELECT subid FROM Subscriptions WHERE id=:id")
        self.first_seq_chunk = t(
            "SELECT COALESCE(MAX(seq), 0) FROM (SELECT seq FROM Messages WHERE id=:id "
            "ORDER BY seq LIMIT :n) t1"
        )
        self.delete_msgs_upto = t("DELETE FROM Messages WHERE id=:id AND seq<=:seq")
        self.delete_channel_subs = t("DELETE FROM Subscriptions WHERE id=:id")
        self.delete_channel_row = t("DELETE FROM Channels WHERE id=:id")
        self.ping = t("SELECT 1")
