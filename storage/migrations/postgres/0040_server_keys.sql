-- Signing keys of other servers, learned directly from them or through
-- notaries: they check the signatures on events and federation requests.
-- A key is usable for anything signed up to valid_until_ts; once the
-- server lists it in old_verify_keys, expired_ts (not 0) is when it
-- stopped being used and replaces valid_until_ts.
CREATE TABLE server_keys (
    server_name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    public_key BYTEA NOT NULL,
    valid_until_ts BIGINT NOT NULL,
    expired_ts BIGINT NOT NULL DEFAULT 0,
    fetched_ts BIGINT NOT NULL,
    PRIMARY KEY (server_name, key_id)
);

-- The latest key response each server gave us directly, with its own
-- signatures: the notary endpoints (/_matrix/key/v2/query) serve it to
-- others, countersigned, also while the server is unreachable.
CREATE TABLE server_key_responses (
    server_name TEXT PRIMARY KEY,
    response_json TEXT NOT NULL,
    valid_until_ts BIGINT NOT NULL,
    fetched_ts BIGINT NOT NULL
);

-- This server's own signing keys, current and past. A key stops being
-- current when the server starts with another one; past keys are still
-- published (old_verify_keys, with expired_ts) so that events they signed
-- keep verifying.
CREATE TABLE own_signing_keys (
    key_id TEXT PRIMARY KEY,
    public_key BYTEA NOT NULL,
    first_used_ts BIGINT NOT NULL,
    expired_ts BIGINT NOT NULL DEFAULT 0 -- 0 while current
);
