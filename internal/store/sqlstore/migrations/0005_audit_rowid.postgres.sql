-- The unique index on audit_events.id guarded nothing the hash chain does
-- not: event ids are random, and nothing looks events up by id. (The
-- SQLite version of this migration also makes seq the table's rowid.)
ALTER TABLE audit_events DROP CONSTRAINT IF EXISTS audit_events_id_key;
