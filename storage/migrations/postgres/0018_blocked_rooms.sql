-- Rooms an admin blocked (admin API): nobody on this server may join, be
-- invited to or knock on them.
CREATE TABLE blocked_rooms (
    room_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL, -- the admin who blocked it
    ts BIGINT NOT NULL
);
