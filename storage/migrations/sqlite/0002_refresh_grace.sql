-- The refresh token a device held before its last refresh. It stays valid
-- until the new access or refresh token is used, so a client whose /refresh
-- response was lost can retry (spec: "Refreshing an access token").
ALTER TABLE devices ADD COLUMN prev_refresh_token_hash BLOB;
