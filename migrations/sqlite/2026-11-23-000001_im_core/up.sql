CREATE TABLE conversations (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    name TEXT,
    avatar TEXT,
    announcement TEXT,
    owner_id TEXT,
    allow_invite BOOLEAN NOT NULL DEFAULT FALSE,
    last_seq BIGINT NOT NULL DEFAULT 0,
    last_message_id BIGINT,
    last_activity_at BIGINT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active',
    settings TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL
);

CREATE TABLE members (
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    user_id TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT 'member',
    joined_at BIGINT NOT NULL,
    left_at BIGINT,
    joined_seq BIGINT NOT NULL DEFAULT 0,
    read_seq BIGINT NOT NULL DEFAULT 0,
    cleared_seq BIGINT NOT NULL DEFAULT 0,
    pinned BOOLEAN NOT NULL DEFAULT FALSE,
    muted BOOLEAN NOT NULL DEFAULT FALSE,
    archived BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (conversation_id, user_id)
);
-- The conversation list: a user's current memberships.
CREATE INDEX members_by_user ON members (user_id, left_at);

CREATE TABLE messages (
    id BIGINT PRIMARY KEY NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    seq BIGINT NOT NULL,
    sender_id TEXT NOT NULL,
    client_msg_id TEXT NOT NULL,
    format TEXT NOT NULL,
    content TEXT NOT NULL,
    attachment TEXT,
    reply_to BIGINT,
    forwarded_from TEXT,
    status TEXT NOT NULL DEFAULT 'sent',
    created_at BIGINT NOT NULL,
    recalled_at BIGINT
);
-- History paging by seq, and the gapless-seq guarantee.
CREATE UNIQUE INDEX messages_by_conversation_seq ON messages (conversation_id, seq);
-- Idempotent sends.
CREATE UNIQUE INDEX messages_by_sender_client_id ON messages (sender_id, client_msg_id);

CREATE TABLE message_deletions (
    user_id TEXT NOT NULL,
    message_id BIGINT NOT NULL REFERENCES messages (id),
    conversation_id TEXT NOT NULL,
    deleted_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, message_id)
);
CREATE INDEX message_deletions_by_conversation ON message_deletions (user_id, conversation_id);
