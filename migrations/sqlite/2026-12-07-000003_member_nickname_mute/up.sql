-- A member's nickname in a group, and until when they may not send there (NULL: they may).
ALTER TABLE members ADD COLUMN nickname TEXT;
ALTER TABLE members ADD COLUMN muted_until BIGINT;
