-- The single global stream position: every change a client can sync gets the
-- next value inside its write transaction.
CREATE TABLE stream_position (
    pos BIGINT NOT NULL
);
INSERT INTO stream_position (pos) VALUES (0);

CREATE TABLE accounts (
    user_id TEXT PRIMARY KEY,
    localpart TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL DEFAULT '',
    is_admin BIGINT NOT NULL DEFAULT 0,
    deactivated BIGINT NOT NULL DEFAULT 0,
    created_ts BIGINT NOT NULL,
    displayname TEXT,
    avatar_url TEXT
);

-- One row per device; the access and refresh tokens are stored as SHA-256 hashes.
CREATE TABLE devices (
    user_id TEXT NOT NULL REFERENCES accounts(user_id),
    device_id TEXT NOT NULL,
    display_name TEXT,
    access_token_hash BYTEA NOT NULL UNIQUE,
    access_expires_ts BIGINT,
    refresh_token_hash BYTEA UNIQUE,
    created_ts BIGINT NOT NULL,
    last_seen_ts BIGINT,
    last_seen_ip TEXT,
    PRIMARY KEY (user_id, device_id)
);

-- Global account data has room_id ''.
CREATE TABLE account_data (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    content TEXT NOT NULL,
    stream_pos BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX account_data_user_pos ON account_data (user_id, stream_pos);

CREATE TABLE filters (
    user_id TEXT NOT NULL,
    filter_id BIGINT NOT NULL,
    filter_json TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);
CREATE UNIQUE INDEX filters_user_json ON filters (user_id, filter_json);

-- The user's changes to push rules (custom rules and default-rule overrides) as one JSON document.
CREATE TABLE push_rules (
    user_id TEXT PRIMARY KEY,
    rules TEXT NOT NULL,
    stream_pos BIGINT NOT NULL
);

CREATE TABLE registration_tokens (
    token TEXT PRIMARY KEY,
    uses_allowed BIGINT,
    completed BIGINT NOT NULL DEFAULT 0,
    expiry_ts BIGINT,
    created_ts BIGINT NOT NULL
);
