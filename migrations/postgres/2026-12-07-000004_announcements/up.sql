-- Announcements to all users, kept so that a user who was offline finds the recent ones.
CREATE TABLE announcements (
    id BIGINT PRIMARY KEY NOT NULL,
    sender_id TEXT NOT NULL,
    content_type TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
-- Each user's read marker: the newest announcement id they have read.
CREATE TABLE announcement_reads (
    user_id TEXT PRIMARY KEY NOT NULL,
    read_up_to BIGINT NOT NULL
);
