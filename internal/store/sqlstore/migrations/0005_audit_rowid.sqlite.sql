-- On SQLite only "INTEGER PRIMARY KEY" makes a column the rowid: the
-- "BIGINT PRIMARY KEY" of version 1 gave audit_events a rowid and, beside
-- it, a unique index on seq. And the unique index on id guarded nothing the
-- hash chain does not: event ids are random, and nothing looks events up by
-- id. Rebuild the table with seq as its rowid and without that index, so
-- that an audited write inserts into five b-trees instead of seven.
CREATE TABLE audit_events_new (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL,
    time        BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    remote_addr TEXT NOT NULL,
    details     TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
INSERT INTO audit_events_new (seq, id, time, actor, action, target, remote_addr, details, prev_hash, hash)
    SELECT seq, id, time, actor, action, target, remote_addr, details, prev_hash, hash FROM audit_events ORDER BY seq;
DROP TABLE audit_events;
ALTER TABLE audit_events_new RENAME TO audit_events;
CREATE INDEX audit_action_idx ON audit_events (action, seq);
CREATE INDEX audit_actor_idx ON audit_events (actor, seq);
CREATE INDEX audit_target_idx ON audit_events (target, seq);
CREATE INDEX audit_time_idx ON audit_events (time);
