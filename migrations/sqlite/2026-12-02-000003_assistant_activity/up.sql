-- The staff list of assistant conversations, newest activity first, is indexed on a column of
-- its own, NULL except on assistant conversations (the same schema as on PostgreSQL, where an
-- index over last_activity_at makes every message's conversation update a non-HOT update).
DROP INDEX conversations_by_kind_activity;
ALTER TABLE conversations ADD COLUMN assistant_activity_at BIGINT
    GENERATED ALWAYS AS (CASE WHEN kind = 'assistant' THEN last_activity_at END) VIRTUAL;
CREATE INDEX conversations_by_assistant_activity ON conversations (assistant_activity_at, id)
    WHERE assistant_activity_at IS NOT NULL;
