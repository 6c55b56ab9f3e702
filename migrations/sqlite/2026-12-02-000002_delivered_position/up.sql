-- Delivery is a position per member, like reading: a private message is `delivered` when its seq
-- is at most the recipient's delivered_seq and `read` when at most their read_seq. Nothing
-- rewrites message rows when they are delivered or read.
ALTER TABLE members ADD COLUMN delivered_seq BIGINT NOT NULL DEFAULT 0;
UPDATE members SET delivered_seq = COALESCE((
    SELECT MAX(x.seq) FROM messages AS x
    WHERE x.conversation_id = members.conversation_id AND x.sender_id <> members.user_id
      AND x.status IN ('delivered', 'read')), 0)
WHERE members.conversation_id LIKE 'private\_%' ESCAPE '\';
UPDATE messages SET status = 'sent' WHERE status IN ('delivered', 'read');
