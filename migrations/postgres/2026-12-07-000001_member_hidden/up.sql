-- A member hides a conversation from their list until its next message: it is hidden while the
-- conversation's last_seq is at most hidden_seq (-1: not hidden), so a new message brings it
-- back without touching this row.
ALTER TABLE members ADD COLUMN hidden_seq BIGINT NOT NULL DEFAULT -1;
