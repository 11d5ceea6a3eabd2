-- The usage flushes written, by the id their node gave them, so that a
-- flush sent again because its first reply was lost (the commit may have
-- happened) is not counted twice. Rows leave after a day (the janitor).
CREATE TABLE usage_flushes (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL
);
CREATE INDEX usage_flushes_at_idx ON usage_flushes (at);
