-- Which setting of a token's quota quota_remaining belongs to: it changes
-- whenever the quota is set (PATCH), and usage flushed for another version
-- is dropped rather than applied to the quota that replaced it.
ALTER TABLE tokens ADD COLUMN quota_version BIGINT NOT NULL DEFAULT 0;
