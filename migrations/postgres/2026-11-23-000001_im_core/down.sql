DROP TABLE message_deletions;
DROP TABLE messages;
DROP TABLE members;
DROP TABLE conversations;
