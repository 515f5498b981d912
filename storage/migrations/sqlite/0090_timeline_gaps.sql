-- Gaps in rooms' timelines: the stream positions of timeline events stored
-- with prev events this server does not hold in the timeline (a gap the
-- server could not or would not fill, as after an outage). /sync shows
-- only what follows the latest gap in its range, marked limited, so that
-- clients page back rather than take the history for complete (Synapse's
-- timeline_gaps).
CREATE TABLE timeline_gaps (
    room_nid INTEGER NOT NULL,
    stream_pos INTEGER NOT NULL,
    PRIMARY KEY (room_nid, stream_pos)
) WITHOUT ROWID;
