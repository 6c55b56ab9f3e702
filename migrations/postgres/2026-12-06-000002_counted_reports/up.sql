-- A report counts toward an automatic ban only when its reporter had received a message from the
-- reported user when they made it; each reporter counts once, however often they report. Reports
-- made before this rule existed were never checked, so they count for nothing.
ALTER TABLE reports ADD COLUMN counted BOOLEAN NOT NULL DEFAULT FALSE;
-- The distinct reporters whose reports count against a user within the ban window.
CREATE INDEX reports_counted_by_user ON reports (user_id, created_at, reporter_id) WHERE counted;
-- The admin listing, newest first: of one user's reports (this index replaces reports_by_user,
-- its prefix), and of all.
DROP INDEX reports_by_user;
CREATE INDEX reports_by_user_time ON reports (user_id, created_at, id);
CREATE INDEX reports_by_time ON reports (created_at, id);
