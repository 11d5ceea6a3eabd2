-- Jeton schema, version 1. Times are BIGINT Unix milliseconds (UTC) on both
-- engines; {{BYTES}} is BLOB on SQLite and BYTEA on PostgreSQL.

CREATE TABLE apis (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    identifier     TEXT NOT NULL UNIQUE,
    scopes         TEXT NOT NULL,             -- JSON array
    key_prefix     TEXT NOT NULL,
    default_ttl_ms BIGINT NOT NULL DEFAULT 0,
    max_ttl_ms     BIGINT NOT NULL DEFAULT 0,
    builtin        INTEGER NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE tokens (
    id                    TEXT PRIMARY KEY,
    api_id                TEXT NOT NULL REFERENCES apis (id) ON DELETE CASCADE,
    name                  TEXT NOT NULL,
    subject               TEXT NOT NULL,
    scopes                TEXT NOT NULL,      -- JSON array
    hint                  TEXT NOT NULL,
    metadata              TEXT NOT NULL,      -- JSON object, or ''
    allowed_cidrs         TEXT NOT NULL,      -- JSON array, or ''
    rate_limit            BIGINT NOT NULL DEFAULT 0,
    rate_window_ms        BIGINT NOT NULL DEFAULT 0,
    quota_remaining       BIGINT,             -- NULL: no quota
    quota_refill_amount   BIGINT NOT NULL DEFAULT 0,
    quota_refill_interval TEXT NOT NULL DEFAULT '',
    quota_period_start    BIGINT NOT NULL DEFAULT 0,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    expires_at            BIGINT,
    revoked_at            BIGINT,
    revoke_reason         TEXT NOT NULL DEFAULT '',
    rotated_at            BIGINT,
    last_used_at          BIGINT,
    last_used_ip          TEXT NOT NULL DEFAULT '',
    use_count             BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX tokens_api_idx ON tokens (api_id, id);
CREATE INDEX tokens_subject_idx ON tokens (subject, id);
CREATE INDEX tokens_expires_idx ON tokens (expires_at);
CREATE INDEX tokens_revoked_idx ON tokens (revoked_at);

-- The hashes a token can be presented under: its current secret (expires_at
-- NULL) and, during a rotation grace period, the secret it replaced.
CREATE TABLE token_secrets (
    hash       {{BYTES}} PRIMARY KEY,
    token_id   TEXT NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    expires_at BIGINT
);
CREATE INDEX token_secrets_token_idx ON token_secrets (token_id);

CREATE TABLE token_usage (
    token_id TEXT NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    hour     BIGINT NOT NULL,
    allowed  BIGINT NOT NULL DEFAULT 0,
    denied   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (token_id, hour)
);

-- audit_head holds the sequence number and hash of the newest audit event.
-- Appending updates it first, which serialises appends across nodes.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY,
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '');

CREATE TABLE audit_events (
    seq         BIGINT PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    time        BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    remote_addr TEXT NOT NULL,
    details     TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX audit_action_idx ON audit_events (action, seq);
CREATE INDEX audit_actor_idx ON audit_events (actor, seq);
CREATE INDEX audit_target_idx ON audit_events (target, seq);
CREATE INDEX audit_time_idx ON audit_events (time);
