-- Content reports (spec "Reporting content"): events, rooms and users that
-- users reported to the server admins. Only user_id is set for user reports,
-- room_id for room reports, and for event reports room_id, event_id and
-- user_id (the event's sender).
CREATE TABLE content_reports (
    report_id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    reporter TEXT NOT NULL,
    room_id TEXT NOT NULL DEFAULT '',
    event_id TEXT NOT NULL DEFAULT '',
    user_id TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    score INTEGER,
    ts INTEGER NOT NULL
);
CREATE INDEX content_reports_room ON content_reports (room_id, report_id);
