ALTER TABLE members DROP COLUMN muted_until;
ALTER TABLE members DROP COLUMN nickname;
