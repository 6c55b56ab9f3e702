ALTER TABLE messages DROP COLUMN recipient_position;
ALTER TABLE messages DROP COLUMN sender_position;
DROP TABLE inbox_heads;
