DROP TABLE revoked_access_tokens;
ALTER TABLE users DROP COLUMN token_generation;
DROP TABLE refresh_tokens;
