-- HTTP pushers (POST /pushers/set), each tied to the device whose access
-- token created it, and how far along the user's push_actions it has been
-- delivered to its push gateway (last_pos, a stream position).
CREATE TABLE pushers (
    user_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    pushkey TEXT NOT NULL,
    device_id TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL,
    app_display_name TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag TEXT NOT NULL DEFAULT '',
    lang TEXT NOT NULL,
    -- The data object as given (JSON), url included.
    data TEXT NOT NULL,
    -- When the pushkey was last set (ms).
    pushkey_ts INTEGER NOT NULL,
    last_pos INTEGER NOT NULL,
    PRIMARY KEY (user_id, app_id, pushkey)
) WITHOUT ROWID;
CREATE INDEX pushers_app_pushkey ON pushers (app_id, pushkey);
