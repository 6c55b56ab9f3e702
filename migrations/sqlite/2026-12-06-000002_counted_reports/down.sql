DROP INDEX reports_by_time;
DROP INDEX reports_by_user_time;
CREATE INDEX reports_by_user ON reports (user_id, created_at);
DROP INDEX reports_counted_by_user;
ALTER TABLE reports DROP COLUMN counted;
