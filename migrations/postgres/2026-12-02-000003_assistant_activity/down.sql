DROP INDEX conversations_by_assistant_activity;
ALTER TABLE conversations DROP COLUMN assistant_activity_at;
CREATE INDEX conversations_by_kind_activity ON conversations (kind, last_activity_at);
