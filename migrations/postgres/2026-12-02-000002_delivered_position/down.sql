UPDATE messages AS x SET status = 'delivered'
FROM members AS m
WHERE m.conversation_id = x.conversation_id AND m.user_id <> x.sender_id
  AND x.status = 'sent' AND x.seq <= m.delivered_seq;
UPDATE messages AS x SET status = 'read'
FROM members AS m
WHERE x.conversation_id LIKE 'private\_%' AND m.conversation_id = x.conversation_id
  AND m.user_id <> x.sender_id AND x.status IN ('sent', 'delivered') AND x.seq <= m.read_seq;
ALTER TABLE members DROP COLUMN delivered_seq;
