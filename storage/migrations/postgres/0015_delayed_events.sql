-- Delayed events (MSC4140): events a user scheduled to be sent later unless
-- restarted or cancelled first (Element Call's "leave the call" when a client
-- vanishes). A row is removed once its event is sent or it is cancelled.
CREATE TABLE delayed_events (
    delay_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT, -- NULL for a timeline event
    content TEXT NOT NULL,
    delay_ms BIGINT NOT NULL,
    running_since BIGINT NOT NULL, -- when the delay last (re)started, ms
    send_ts BIGINT NOT NULL -- running_since + delay_ms
);
CREATE INDEX delayed_events_due ON delayed_events (send_ts);
CREATE INDEX delayed_events_user ON delayed_events (user_id);
CREATE INDEX delayed_events_state ON delayed_events (room_id, type, state_key) WHERE state_key IS NOT NULL;
