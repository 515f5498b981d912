-- Memberships of local users in rooms this server is not in: a remote
-- invite, its rejection or rescission, a knock and its withdrawal. The
-- member event is stored as an outlier (no state, outside the timeline and
-- the DAG head); its membership is current_state's row for the user, at the
-- stream position recorded here, so sync's membership queries see it.
-- stripped_state is the room summary the other server gave
-- (invite_room_state, knock_room_state) as a JSON array, for sync.
CREATE TABLE out_of_band_memberships (
    event_nid BIGINT PRIMARY KEY,
    room_nid BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    stream_pos BIGINT NOT NULL,
    stripped_state TEXT
);
CREATE INDEX out_of_band_memberships_user ON out_of_band_memberships (user_id, stream_pos);
