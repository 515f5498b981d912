package mediaapi

import (
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

// maxFilenameBytes bounds the filename query parameter.
const maxFilenameBytes = 1024

// uploadMeta is what an upload request says about its content.
type uploadMeta struct {
	contentType string
	filename    string
}

// readUploadMeta reads the Content-Type header and filename parameter.
func readUploadMeta(r *http.Request) (uploadMeta, error) {
	name := r.URL.Query().Get("filename")
	if len(name) > maxFilenameBytes || !utf8.ValidString(name) {
		return uploadMeta{}, httputil.InvalidParam("filename must be valid UTF-8 of at most %d bytes", maxFilenameBytes)
	}
	return uploadMeta{contentType: normalizeContentType(r.Header.Get("Content-Type")), filename: name}, nil
}

// normalizeContentType keeps a well-formed media type (lowercased, with its
// parameters) and maps anything missing or malformed to
// application/octet-stream, the spec's default.
func normalizeContentType(ct string) string {
	if ct == "" || len(ct) > 255 {
		return "application/octet-stream"
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return "application/octet-stream"
	}
	if out := mime.FormatMediaType(mt, params); out != "" {
		return out
	}
	return "application/octet-stream"
}

// receive streams the request body into a staged file, enforcing the upload
// size limit (413 M_TOO_LARGE) and the user's quota (403 M_FORBIDDEN).
func (m *Media) receive(r *http.Request, userID string) (*Staged, error) {
	if r.ContentLength > m.maxUpload {
		return nil, httputil.TooLarge("Upload exceeds the limit of %d bytes", m.maxUpload)
	}
	limit := m.maxUpload
	if m.quota > 0 {
		used, err := m.db.MediaUsage(r.Context(), userID)
		if err != nil {
			return nil, err
		}
		if used+max(r.ContentLength, 0) > m.quota {
			return nil, quotaExceeded()
		}
		limit = min(limit, m.quota-used)
	}
	var body io.Reader = http.NoBody
	if r.Body != nil {
		body = r.Body
	}
	st, err := m.store.Stage(body, limit)
	if errors.Is(err, errTooLarge) {
		if limit < m.maxUpload {
			return nil, quotaExceeded()
		}
		return nil, httputil.TooLarge("Upload exceeds the limit of %d bytes", m.maxUpload)
	}
	if err != nil {
		return nil, err
	}
	return st, nil
}

func quotaExceeded() error {
	return httputil.Forbidden("Upload would exceed your media quota")
}

// checkQuota re-checks the quota inside the write (concurrent uploads).
func (m *Media) checkQuota(ctx context.Context, tx *storage.Tx, userID string, size int64) error {
	if m.quota <= 0 {
		return nil
	}
	used, err := tx.MediaUsage(ctx, userID)
	if err != nil {
		return err
	}
	if used+size > m.quota {
		return quotaExceeded()
	}
	return nil
}

// upload serves POST /_matrix/media/v3/upload.
func (m *Media) upload(w http.ResponseWriter, r *http.Request, s *accounts.Session) error {
	meta, err := readUploadMeta(r)
	if err != nil {
		return err
	}
	st, err := m.receive(r, s.UserID)
	if err != nil {
		return err
	}
	defer st.Discard()
	now := m.now().UnixMilli()
	med := storage.Media{
		Origin: m.serverName, MediaID: newMediaID(), UserID: s.UserID, CreatedTS: now, UploadedTS: now,
		ContentType: meta.contentType, UploadName: meta.filename, Size: st.Size, SHA256: st.SHA256,
	}
	err = m.db.Write(r.Context(), func(tx *storage.Tx) error {
		if err := m.checkQuota(r.Context(), tx, s.UserID, st.Size); err != nil {
			return err
		}
		if err := tx.InsertMedia(r.Context(), med); err != nil {
			return err
		}
		return m.store.Commit(tx, st)
	})
	if err != nil {
		return err
	}
	m.uploaded(&med)
	httputil.WriteJSON(w, http.StatusOK, map[string]string{"content_uri": m.mxc(med.MediaID)})
	return nil
}

// createMXC serves POST /_matrix/media/v1/create.
func (m *Media) createMXC(w http.ResponseWriter, r *http.Request, s *accounts.Session) error {
	now := m.now()
	med := storage.Media{
		Origin: m.serverName, MediaID: newMediaID(), UserID: s.UserID, CreatedTS: now.UnixMilli(),
		UnusedExpiresTS: now.Add(pendingLifetime).UnixMilli(),
	}
	err := m.db.Write(r.Context(), func(tx *storage.Tx) error {
		n, err := tx.PendingMediaCount(r.Context(), s.UserID, now.UnixMilli())
		if err != nil {
			return err
		}
		if n >= maxPendingPerUser {
			return httputil.LimitExceeded(60_000, "Too many pending uploads")
		}
		return tx.InsertMedia(r.Context(), med)
	})
	if err != nil {
		return err
	}
	httputil.WriteJSON(w, http.StatusOK, map[string]any{
		"content_uri":       m.mxc(med.MediaID),
		"unused_expires_at": med.UnusedExpiresTS,
	})
	return nil
}

func cannotOverwrite() error {
	return &httputil.Error{Status: http.StatusConflict, Code: "M_CANNOT_OVERWRITE_MEDIA", Msg: "Media already uploaded"}
}

// uploadToMXC serves PUT /_matrix/media/v3/upload/{serverName}/{mediaId}.
func (m *Media) uploadToMXC(w http.ResponseWriter, r *http.Request, s *accounts.Session) error {
	serverName, mediaID := pathVar(r, "serverName"), pathVar(r, "mediaId")
	if serverName != m.serverName || !validMediaID(mediaID) {
		return httputil.NotFound("Unknown media ID")
	}
	meta, err := readUploadMeta(r)
	if err != nil {
		return err
	}
	// Refuse early, before reading the body.
	med, err := m.db.Media(r.Context(), serverName, mediaID)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return httputil.NotFound("Unknown media ID")
		}
		return err
	}
	if err := m.checkPending(med, s.UserID); err != nil {
		return err
	}
	st, err := m.receive(r, s.UserID)
	if err != nil {
		return err
	}
	defer st.Discard()
	done := *med
	done.UploadedTS = m.now().UnixMilli()
	done.ContentType, done.UploadName, done.Size, done.SHA256 = meta.contentType, meta.filename, st.Size, st.SHA256
	err = m.db.Write(r.Context(), func(tx *storage.Tx) error {
		cur, err := tx.Media(r.Context(), serverName, mediaID)
		if err != nil {
			return err
		}
		if err := m.checkPending(cur, s.UserID); err != nil {
			return err
		}
		if err := m.checkQuota(r.Context(), tx, s.UserID, st.Size); err != nil {
			return err
		}
		if err := tx.CompleteMedia(r.Context(), done); err != nil {
			return err
		}
		if err := m.store.Commit(tx, st); err != nil {
			return err
		}
		tx.OnCommit(func() { m.waiters.wake(mediaID) })
		return nil
	})
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return httputil.NotFound("Unknown media ID")
	case errors.Is(err, storage.ErrExists):
		return cannotOverwrite()
	case err != nil:
		return err
	}
	m.uploaded(&done)
	httputil.WriteJSON(w, http.StatusOK, httputil.Empty)
	return nil
}

// checkPending allows content for a created, unexpired, empty mxc:// URI,
// only from the user who created it.
func (m *Media) checkPending(med *storage.Media, userID string) error {
	if med.UserID != userID {
		return httputil.Forbidden("Only the creator of this media ID may upload to it")
	}
	if !med.Pending() {
		return cannotOverwrite()
	}
	if med.UnusedExpiresTS <= m.now().UnixMilli() {
		return httputil.NotFound("This media ID has expired")
	}
	return nil
}

// uploaded starts thumbnail generation for new image content.
func (m *Media) uploaded(med *storage.Media) {
	if !thumbnailable(med.ContentType) {
		return
	}
	cp := *med
	m.background(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := m.thumbs.pregenerate(ctx, &cp); err != nil {
			m.log.WithError(err).WithField("media_id", cp.MediaID).Warn("pre-generating thumbnails failed")
		}
	})
}

// thumbnailable reports whether the declared content type is an image
// format the server can thumbnail.
func thumbnailable(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	switch strings.ToLower(mt) {
	case "image/jpeg", "image/jpg", "image/png", "image/gif", "image/webp":
		return true
	}
	return false
}
