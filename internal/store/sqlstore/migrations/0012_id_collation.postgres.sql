-- IDs (tok_…, cli_…, usr_…, api_…, grt_…, key_…) sort by creation time in
-- byte order only: their base62 mixes upper- and lower-case letters. A
-- database whose default collation is linguistic (en_US.UTF-8, the default
-- of many installations) sorts "a" before "B", so newest-first listings
-- were out of time order there. Every column holding an ID compares byte
-- by byte now, whatever the database's default; the columns compared with
-- each other must share a collation, so the references change with the
-- keys. SQLite compares bytes already (BINARY). The rows are not rewritten,
-- but every index on these columns is rebuilt under an exclusive lock of its
-- table: on a large store, start the upgraded node in a quiet hour.
ALTER TABLE apis ALTER COLUMN id TYPE TEXT COLLATE "C";
ALTER TABLE tokens ALTER COLUMN id TYPE TEXT COLLATE "C",
    ALTER COLUMN api_id TYPE TEXT COLLATE "C",
    ALTER COLUMN client_id TYPE TEXT COLLATE "C",
    ALTER COLUMN grant_id TYPE TEXT COLLATE "C";
ALTER TABLE token_secrets ALTER COLUMN token_id TYPE TEXT COLLATE "C";
ALTER TABLE token_usage ALTER COLUMN token_id TYPE TEXT COLLATE "C";
ALTER TABLE clients ALTER COLUMN id TYPE TEXT COLLATE "C";
ALTER TABLE client_secrets ALTER COLUMN client_id TYPE TEXT COLLATE "C";
ALTER TABLE users ALTER COLUMN id TYPE TEXT COLLATE "C";
ALTER TABLE consents ALTER COLUMN user_id TYPE TEXT COLLATE "C",
    ALTER COLUMN client_id TYPE TEXT COLLATE "C",
    ALTER COLUMN api_id TYPE TEXT COLLATE "C";
ALTER TABLE grants ALTER COLUMN id TYPE TEXT COLLATE "C",
    ALTER COLUMN client_id TYPE TEXT COLLATE "C",
    ALTER COLUMN user_id TYPE TEXT COLLATE "C",
    ALTER COLUMN api_id TYPE TEXT COLLATE "C";
ALTER TABLE refresh_tokens ALTER COLUMN grant_id TYPE TEXT COLLATE "C";
ALTER TABLE auth_codes ALTER COLUMN client_id TYPE TEXT COLLATE "C",
    ALTER COLUMN user_id TYPE TEXT COLLATE "C",
    ALTER COLUMN api_id TYPE TEXT COLLATE "C",
    ALTER COLUMN grant_id TYPE TEXT COLLATE "C";
ALTER TABLE device_codes ALTER COLUMN client_id TYPE TEXT COLLATE "C",
    ALTER COLUMN user_id TYPE TEXT COLLATE "C",
    ALTER COLUMN api_id TYPE TEXT COLLATE "C",
    ALTER COLUMN grant_id TYPE TEXT COLLATE "C";
ALTER TABLE signing_keys ALTER COLUMN id TYPE TEXT COLLATE "C";
ALTER TABLE revocations ALTER COLUMN api_id TYPE TEXT COLLATE "C";
