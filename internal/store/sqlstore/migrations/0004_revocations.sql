-- The revocation feed (GET /v1/revocations): one row per revoked token,
-- JWT access token (by jti) or grant, kept until expires_at. Times are
-- BIGINT Unix milliseconds (UTC).
--
-- seq is not an identity column: it is claimed from revocation_head, whose
-- single row every recording transaction updates. On PostgreSQL that row
-- lock is held until commit, so recording transactions commit one after
-- the other in seq order and a reader never sees seq n+1 before seq n.
-- The same SQL serves both engines, and purging every row never makes a
-- seq be handed out twice.
CREATE TABLE revocation_head (
    id  INTEGER PRIMARY KEY,
    seq BIGINT NOT NULL
);
INSERT INTO revocation_head (id, seq) VALUES (1, 0);

CREATE TABLE revocations (
    seq        BIGINT PRIMARY KEY,
    kind       TEXT NOT NULL,             -- 'token' or 'grant'
    ref        TEXT NOT NULL,             -- token id, JWT jti or grant id
    api_id     TEXT NOT NULL,
    revoked_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX revocations_ref_idx ON revocations (ref);
CREATE INDEX revocations_expires_idx ON revocations (expires_at);
