-- The janitor deletes the secrets that rotations left behind once their
-- grace period is over. Only those have an expiry, so this index holds
-- only them; without it, every batch of the janitor read every secret.
CREATE INDEX token_secrets_expires_idx ON token_secrets (expires_at) WHERE expires_at IS NOT NULL;
