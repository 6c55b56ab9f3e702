DROP INDEX IF EXISTS messages_content_trgm;
DROP TABLE file_uses;
DROP TABLE files;
DROP TABLE bans;
DROP TABLE moderation_hits;
DROP TABLE reports;
DROP TABLE blocks;
