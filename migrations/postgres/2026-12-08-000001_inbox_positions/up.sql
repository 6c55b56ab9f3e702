-- Each user's newest inbox position: private and assistant messages, sent and received, are
-- numbered per user in commit order, so that /user/queue/messages can resume from a position.
CREATE TABLE inbox_heads (
    user_id TEXT PRIMARY KEY NOT NULL,
    position BIGINT NOT NULL
);
-- The message's position in its sender's inbox and in its recipient's (NULL: not numbered, as
-- group and system messages, and those stored before positions existed).
ALTER TABLE messages ADD COLUMN sender_position BIGINT;
ALTER TABLE messages ADD COLUMN recipient_position BIGINT;
