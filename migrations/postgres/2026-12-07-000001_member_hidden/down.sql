ALTER TABLE members DROP COLUMN hidden_seq;
