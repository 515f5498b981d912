-- Media metadata. The bytes live in a content-addressed store under the media
-- path (named by their SHA-256), so identical uploads share one file; rows
-- here (media and thumbnails) are the references that keep a file alive.
-- origin is the server name of the mxc:// URI (only local media so far).
CREATE TABLE media (
    origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    -- Pending async uploads (POST /media/v1/create) have uploaded_ts 0 and no
    -- content until PUT /media/v3/upload; unused_expires_ts is their deadline.
    uploaded_ts BIGINT NOT NULL DEFAULT 0,
    unused_expires_ts BIGINT NOT NULL DEFAULT 0,
    content_type TEXT NOT NULL DEFAULT '',
    upload_name TEXT NOT NULL DEFAULT '',
    size BIGINT NOT NULL DEFAULT 0,
    sha256 TEXT NOT NULL DEFAULT '',
    -- 0: not tried yet, 1: thumbnails can be made, 2: cannot be thumbnailed,
    -- 3: too many pixels to thumbnail.
    thumb_state BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (origin, media_id)
);
CREATE INDEX media_sha256 ON media (sha256) WHERE sha256 != '';
CREATE INDEX media_user ON media (user_id, created_ts);
CREATE INDEX media_created ON media (created_ts);

-- Thumbnails, keyed by the size and method that were asked for; width and
-- height are what was produced.
CREATE TABLE media_thumbnails (
    origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    req_width BIGINT NOT NULL,
    req_height BIGINT NOT NULL,
    method TEXT NOT NULL,
    width BIGINT NOT NULL,
    height BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, media_id, req_width, req_height, method),
    FOREIGN KEY (origin, media_id) REFERENCES media (origin, media_id) ON DELETE CASCADE
);
CREATE INDEX media_thumbnails_sha256 ON media_thumbnails (sha256);

-- Cached URL previews (Open Graph data as JSON).
CREATE TABLE url_previews (
    url TEXT PRIMARY KEY,
    fetched_ts BIGINT NOT NULL,
    og TEXT NOT NULL
);
CREATE INDEX url_previews_fetched ON url_previews (fetched_ts);
