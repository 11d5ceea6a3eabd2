-- Where OpenID Connect RP-initiated logout may send a client's users back
-- to: a JSON list of URIs, matched exactly, like redirect_uris.
ALTER TABLE clients ADD COLUMN post_logout_redirect_uris TEXT NOT NULL DEFAULT '[]';
