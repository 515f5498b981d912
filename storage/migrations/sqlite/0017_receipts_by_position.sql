-- /sync asks which rooms have receipts newer than its token: by position,
-- not by scanning every receipt of every room.
CREATE INDEX receipts_pos ON receipts (stream_pos, room_nid);
