-- OpenID tokens (POST /user/{userId}/openid/request_token): a third party
-- (a widget, Element Call's token service) proves who a user is by asking
-- the server's federation API (/openid/userinfo). Stored hashed, expiring.
CREATE TABLE openid_tokens (
    token_hash BYTEA PRIMARY KEY,
    user_id TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX openid_tokens_expiry ON openid_tokens (expires_ts);
