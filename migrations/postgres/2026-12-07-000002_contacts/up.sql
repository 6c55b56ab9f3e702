-- Contact requests: at most one pending per (from, to); decided ones stay as history.
CREATE TABLE contact_requests (
    id BIGINT PRIMARY KEY NOT NULL,
    from_user TEXT NOT NULL,
    to_user TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX contact_requests_pending ON contact_requests (from_user, to_user)
    WHERE status = 'pending';
CREATE INDEX contact_requests_to ON contact_requests (to_user, status, created_at, id);
CREATE INDEX contact_requests_from ON contact_requests (from_user, status, created_at, id);

-- Contacts, one row per direction: (user_id, contact_id) and (contact_id, user_id).
CREATE TABLE contacts (
    user_id TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, contact_id)
);
