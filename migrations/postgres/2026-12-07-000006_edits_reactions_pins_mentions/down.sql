DROP TABLE conversation_pins;
DROP TABLE message_reactions;
DROP INDEX messages_mentioning;
ALTER TABLE messages DROP COLUMN mentions;
ALTER TABLE messages DROP COLUMN edited_at;
