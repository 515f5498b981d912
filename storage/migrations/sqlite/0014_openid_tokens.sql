-- OpenID tokens (POST /user/{userId}/openid/request_token): a third party
-- (a widget, Element Call's token service) proves who a user is by asking
-- the server's federation API (/openid/userinfo). Stored hashed, expiring.
CREATE TABLE openid_tokens (
    token_hash BLOB PRIMARY KEY,
    user_id TEXT NOT NULL,
    expires_ts INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX openid_tokens_expiry ON openid_tokens (expires_ts);
