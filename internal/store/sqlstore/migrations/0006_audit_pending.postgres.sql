-- Audit events waiting to be chained (PostgreSQL only; see auditchain.go).
-- A write records its event here in its own transaction, with no lock
-- shared with other writes; a chainer appends pending events to
-- audit_events in order shortly after they commit.
CREATE TABLE audit_pending (
    n           BIGSERIAL PRIMARY KEY,
    id          TEXT NOT NULL,
    time        BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    remote_addr TEXT NOT NULL,
    details     TEXT NOT NULL
);
