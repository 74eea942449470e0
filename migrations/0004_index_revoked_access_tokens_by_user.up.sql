-- Rebuilding a user's cached revocation state reads their unexpired deny entries, and deleting
-- a user cascades to them: both look rows up by user.
CREATE INDEX revoked_access_tokens_user_expires_idx ON revoked_access_tokens (user_id, expires_at);
