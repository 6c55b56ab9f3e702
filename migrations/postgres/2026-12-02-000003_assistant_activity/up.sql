-- The staff list of assistant conversations, newest activity first, is indexed on a column of
-- its own, NULL except on assistant conversations. An index over last_activity_at, which every
-- message moves, made each message's conversation update a non-HOT update: a new index entry
-- in every index of the table, and a primary key bloated with dead versions of its hottest rows.
DROP INDEX conversations_by_kind_activity;
ALTER TABLE conversations ADD COLUMN assistant_activity_at BIGINT
    GENERATED ALWAYS AS (CASE WHEN kind = 'assistant' THEN last_activity_at END) STORED;
CREATE INDEX conversations_by_assistant_activity ON conversations (assistant_activity_at, id)
    WHERE assistant_activity_at IS NOT NULL;
