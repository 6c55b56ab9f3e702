-- A file is shared by a stored message: the members of the message's conversation may download it
-- while that message stands. The row is written in the transaction that stores the message and
-- deleted when the message is recalled or purged, so a refused send shares nothing and a recall
-- takes the file back from the recipients (its uploader keeps it).
CREATE TABLE file_shares (
    message_id BIGINT PRIMARY KEY NOT NULL,
    file_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL
);
CREATE INDEX file_shares_by_file ON file_shares (file_id, conversation_id);

-- What file_uses recorded per conversation, tied to the messages that carry each file (a
-- recalled message carries none). File ids are hex, so they hold no LIKE wildcard.
INSERT INTO file_shares (message_id, file_id, conversation_id)
SELECT m.id, u.file_id, u.conversation_id
FROM file_uses AS u
JOIN messages AS m ON m.conversation_id = u.conversation_id
WHERE m.attachment LIKE '%"/api/v1/files/' || u.file_id || '"%'
ON CONFLICT DO NOTHING;
DROP TABLE file_uses;
