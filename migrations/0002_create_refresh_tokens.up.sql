-- Refresh tokens: opaque, stored only as a SHA-256 hash, grouped in families. Every refresh
-- consumes its token (used_at) and issues the next one in the same family; presenting a used
-- token again revokes the whole family. A family lives at most family_expires_at.
CREATE TABLE refresh_tokens (
    id                uuid PRIMARY KEY,
    user_id           uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id         uuid NOT NULL,
    token_hash        bytea NOT NULL UNIQUE,
    expires_at        timestamptz NOT NULL,
    family_expires_at timestamptz NOT NULL,
    used_at           timestamptz,
    revoked_at        timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);

-- Access tokens carry the user's token generation; logout-all and a password change bump it,
-- which makes every outstanding access token of that user unusable at once.
ALTER TABLE users ADD COLUMN token_generation integer NOT NULL DEFAULT 0;

-- Logged-out access tokens until they expire. Redis holds the same deny list for speed; this
-- table keeps logout effective while Redis is unavailable.
CREATE TABLE revoked_access_tokens (
    jti        uuid PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL
);
CREATE INDEX revoked_access_tokens_expires_idx ON revoked_access_tokens (expires_at);
