-- Removes every table and index of the nss / nats-streaming-server SQL
-- store from a PostgreSQL database (all stored state is lost):
--   nss --sql_schema drop_postgres | psql -d nss
DROP INDEX IF EXISTS Idx_ChannelsName;
DROP INDEX IF EXISTS Idx_MsgsTimestamp;
DROP INDEX IF EXISTS Idx_SubsPendingSeq;
DROP TABLE IF EXISTS ServerInfo;
DROP TABLE IF EXISTS Clients;
DROP TABLE IF EXISTS Channels;
DROP TABLE IF EXISTS Messages;
DROP TABLE IF EXISTS Subscriptions;
DROP TABLE IF EXISTS SubsPending;
DROP TABLE IF EXISTS StoreLock;
