-- Users. Emails are stored trimmed and lower-cased by the API; the unique index on lower(email)
-- keeps them unique regardless of case even for rows written by hand.
CREATE TABLE users (
    id            uuid PRIMARY KEY,
    email         text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    role          text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));
-- Keyset pagination of the admin listing walks (created_at, id).
CREATE INDEX users_created_at_id_idx ON users (created_at, id);
