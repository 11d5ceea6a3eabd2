-- Browser sessions are sealed cookies that the store does not hold. A
-- password reset, a disable or "sign out everywhere" ends every session of
-- the user begun at or before this time (milliseconds since the epoch).
ALTER TABLE users ADD COLUMN sessions_ended_at BIGINT;
