-- The staff list of assistant conversations, newest activity first.
CREATE INDEX conversations_by_kind_activity ON conversations (kind, last_activity_at);
