-- User files. The object lives in S3 under object_key (uploads/{user_id}/{id}); the row holds
-- what the user declared. A row is 'pending' until HeadObject confirmed the object at complete.
CREATE TABLE uploads (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    object_key   text NOT NULL UNIQUE,
    filename     text NOT NULL CHECK (length(filename) BETWEEN 1 AND 255),
    content_type text NOT NULL,
    size         bigint NOT NULL CHECK (size > 0),
    status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'ready')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);
CREATE INDEX uploads_user_created_idx ON uploads (user_id, created_at DESC, id DESC);
CREATE INDEX uploads_pending_idx ON uploads (created_at) WHERE status = 'pending';
