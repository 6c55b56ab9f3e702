-- When a message's text was last edited (NULL: never).
ALTER TABLE messages ADD COLUMN edited_at BIGINT;
-- Who a group message mentions: a JSON array of user ids, or ["@all"] (NULL: nobody).
ALTER TABLE messages ADD COLUMN mentions TEXT;
-- Only messages that mention someone: what the mention markers and GET /mentions read.
CREATE INDEX messages_mentioning ON messages (conversation_id, seq) WHERE mentions IS NOT NULL;

-- One row per user, message and emoji.
CREATE TABLE message_reactions (
    message_id BIGINT NOT NULL,
    emoji TEXT NOT NULL,
    user_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (message_id, emoji, user_id)
);
CREATE INDEX message_reactions_by_conversation ON message_reactions (conversation_id);

-- Messages pinned in a conversation.
CREATE TABLE conversation_pins (
    conversation_id TEXT NOT NULL,
    message_id BIGINT NOT NULL,
    pinned_by TEXT NOT NULL,
    pinned_at BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, message_id)
);
