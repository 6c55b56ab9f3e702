-- Who blocked whom: a blocked sender gets BLOCKED in private chats.
CREATE TABLE blocks (
    user_id TEXT NOT NULL,
    blocked_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, blocked_id)
);

-- Abuse reports; counted against the reported user for automatic bans.
CREATE TABLE reports (
    id BIGINT PRIMARY KEY NOT NULL,
    reporter_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    message_id BIGINT,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX reports_by_user ON reports (user_id, created_at);

-- Every sensitive-word hit: who, when, where, which rule, and what was done.
CREATE TABLE moderation_hits (
    id BIGINT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    conversation_id TEXT,
    rule TEXT NOT NULL,
    action TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX moderation_hits_by_user ON moderation_hits (user_id, created_at);

-- One row per user ever banned: banned while now < until; lifting sets until to now.
CREATE TABLE bans (
    user_id TEXT PRIMARY KEY NOT NULL,
    reason TEXT NOT NULL,
    banned_at BIGINT NOT NULL,
    until BIGINT NOT NULL
);

-- Uploaded files; the bytes live in the file store under the id.
CREATE TABLE files (
    id TEXT PRIMARY KEY NOT NULL,
    owner_id TEXT NOT NULL,
    name TEXT NOT NULL,
    mime TEXT NOT NULL,
    size BIGINT NOT NULL,
    width BIGINT,
    height BIGINT,
    has_thumbnail BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);

-- The conversations a file was sent in: their members may download it.
CREATE TABLE file_uses (
    file_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    PRIMARY KEY (file_id, conversation_id)
);

-- Substring search (CJK included): trigram GIN index serving LIKE / ILIKE '%q%' for queries of
-- three characters or more; shorter ones scan the caller's conversations.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX messages_content_trgm ON messages USING gin (content gin_trgm_ops);
