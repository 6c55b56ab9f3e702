CREATE TABLE file_uses (
    file_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    PRIMARY KEY (file_id, conversation_id)
);
INSERT INTO file_uses (file_id, conversation_id)
SELECT DISTINCT file_id, conversation_id FROM file_shares;
DROP TABLE file_shares;
