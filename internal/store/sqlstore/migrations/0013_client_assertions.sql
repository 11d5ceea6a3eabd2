-- The client assertions (RFC 7523 private_key_jwt) accepted and not yet
-- expired, by the SHA-256 of their client and jti, so that an assertion is
-- accepted once by the whole cluster and across restarts (RFC 7523 §3),
-- not once by each node's memory. Rows leave at expires_at (the janitor).
CREATE TABLE client_assertions (
    id         {{BYTES}} PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX client_assertions_expires_idx ON client_assertions (expires_at);
