-- Most tokens are never revoked, and API keys often never expire: index
-- only the rows the janitor looks for, so that issuing a token (an API key
-- or an OAuth access token) writes fewer index entries. The janitor's
-- queries say "revoked_at IS NOT NULL AND revoked_at < cutoff", which both
-- engines match to these partial indexes.
DROP INDEX tokens_revoked_idx;
CREATE INDEX tokens_revoked_idx ON tokens (revoked_at) WHERE revoked_at IS NOT NULL;
DROP INDEX tokens_expires_idx;
CREATE INDEX tokens_expires_idx ON tokens (expires_at) WHERE expires_at IS NOT NULL;
DROP INDEX grants_revoked_idx;
CREATE INDEX grants_revoked_idx ON grants (revoked_at) WHERE revoked_at IS NOT NULL;
