-- What an API's scopes allow, in words, for the consent and device pages:
-- a JSON object from scope to description.
ALTER TABLE apis ADD COLUMN scope_descriptions TEXT NOT NULL DEFAULT '{}';
