UPDATE messages SET status = 'delivered'
WHERE status = 'sent' AND EXISTS (
    SELECT 1 FROM members AS m WHERE m.conversation_id = messages.conversation_id
      AND m.user_id <> messages.sender_id AND messages.seq <= m.delivered_seq);
UPDATE messages SET status = 'read'
WHERE conversation_id LIKE 'private\_%' ESCAPE '\' AND status IN ('sent', 'delivered') AND EXISTS (
    SELECT 1 FROM members AS m WHERE m.conversation_id = messages.conversation_id
      AND m.user_id <> messages.sender_id AND messages.seq <= m.read_seq);
ALTER TABLE members DROP COLUMN delivered_seq;
