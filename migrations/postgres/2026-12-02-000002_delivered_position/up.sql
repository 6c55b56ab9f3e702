-- Delivery is a position per member, like reading: a private message is `delivered` when its seq
-- is at most the recipient's delivered_seq and `read` when at most their read_seq. Nothing
-- rewrites message rows when they are delivered or read.
ALTER TABLE members ADD COLUMN delivered_seq BIGINT NOT NULL DEFAULT 0;
UPDATE members AS m SET delivered_seq = COALESCE((
    SELECT MAX(x.seq) FROM messages AS x
    WHERE x.conversation_id = m.conversation_id AND x.sender_id <> m.user_id
      AND x.status IN ('delivered', 'read')), 0)
WHERE m.conversation_id LIKE 'private\_%';
UPDATE messages SET status = 'sent' WHERE status IN ('delivered', 'read');
