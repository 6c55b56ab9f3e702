DROP INDEX reports_by_user_id;
DROP INDEX reports_counted_by_user;
ALTER TABLE reports DROP COLUMN counted;
