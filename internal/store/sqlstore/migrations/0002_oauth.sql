-- OAuth 2.0 / OpenID Connect: clients, users, consents, grants, codes,
-- refresh tokens and signing keys. Times are BIGINT Unix milliseconds (UTC);
-- list columns are JSON arrays; NULL times mean "never".

CREATE TABLE clients (
    id                   TEXT PRIMARY KEY,
    name                 TEXT NOT NULL,
    type                 TEXT NOT NULL,
    grant_types          TEXT NOT NULL,
    redirect_uris        TEXT NOT NULL,
    apis                 TEXT NOT NULL,
    scopes               TEXT NOT NULL,
    token_format         TEXT NOT NULL,
    signing_alg          TEXT NOT NULL,
    access_token_ttl_ms  BIGINT NOT NULL,
    refresh_token_ttl_ms BIGINT NOT NULL,
    auth_method          TEXT NOT NULL,
    jwks                 TEXT NOT NULL,      -- JSON object, or ''
    jwks_uri             TEXT NOT NULL,
    secret_hint          TEXT NOT NULL,
    disabled_at          BIGINT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);

-- The current secret of a confidential client (expires_at NULL) and, during
-- a rotation grace period, the one it replaced.
CREATE TABLE client_secrets (
    hash       {{BYTES}} PRIMARY KEY,
    client_id  TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    expires_at BIGINT
);
CREATE INDEX client_secrets_client_idx ON client_secrets (client_id);

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    disabled_at   BIGINT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE consents (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    api_id     TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id, api_id)
);
CREATE INDEX consents_client_idx ON consents (client_id);

CREATE TABLE grants (
    id            TEXT PRIMARY KEY,
    client_id     TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    user_id       TEXT NOT NULL,
    subject       TEXT NOT NULL,
    api_id        TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    auth_time     BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    revoked_at    BIGINT,
    revoke_reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX grants_client_idx ON grants (client_id);
CREATE INDEX grants_user_idx ON grants (user_id, id);
CREATE INDEX grants_revoked_idx ON grants (revoked_at);

CREATE TABLE refresh_tokens (
    hash        {{BYTES}} PRIMARY KEY,
    grant_id    TEXT NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    retry       {{BYTES}},
    retry_until BIGINT
);
CREATE INDEX refresh_tokens_grant_idx ON refresh_tokens (grant_id);
CREATE INDEX refresh_tokens_expires_idx ON refresh_tokens (expires_at);

CREATE TABLE auth_codes (
    hash             {{BYTES}} PRIMARY KEY,
    client_id        TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    user_id          TEXT NOT NULL,
    redirect_uri     TEXT NOT NULL,
    api_id           TEXT NOT NULL,
    scopes           TEXT NOT NULL,
    challenge        TEXT NOT NULL,
    challenge_method TEXT NOT NULL,
    nonce            TEXT NOT NULL,
    auth_time        BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    used_at          BIGINT,
    grant_id         TEXT NOT NULL DEFAULT ''
);
CREATE INDEX auth_codes_expires_idx ON auth_codes (expires_at);

CREATE TABLE device_codes (
    hash           {{BYTES}} PRIMARY KEY,
    user_code      TEXT NOT NULL UNIQUE,
    client_id      TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    api_id         TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    interval_ms    BIGINT NOT NULL,
    last_polled_at BIGINT,
    status         TEXT NOT NULL,
    user_id        TEXT NOT NULL DEFAULT '',
    auth_time      BIGINT,
    grant_id       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX device_codes_expires_idx ON device_codes (expires_at);

CREATE TABLE signing_keys (
    id          TEXT PRIMARY KEY,
    alg         TEXT NOT NULL,
    public_jwk  TEXT NOT NULL,
    private_key {{BYTES}} NOT NULL,
    created_at  BIGINT NOT NULL,
    active_at   BIGINT NOT NULL,
    retired_at  BIGINT,
    expires_at  BIGINT
);

-- Opaque access tokens live with API keys, so one verify path serves both.
ALTER TABLE tokens ADD COLUMN client_id TEXT NOT NULL DEFAULT '';
ALTER TABLE tokens ADD COLUMN grant_id TEXT NOT NULL DEFAULT '';
CREATE INDEX tokens_grant_idx ON tokens (grant_id) WHERE grant_id <> '';
CREATE INDEX tokens_client_idx ON tokens (client_id) WHERE client_id <> '';
