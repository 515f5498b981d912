package mediaapi

import (
	"errors"
	"io/fs"
	"mime"
	"net/http"
	"strings"
	"time"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
)

// contentSecurityPolicy is the spec's recommended policy for served media,
// with media-src 'self' so audio and video still play when opened directly.
const contentSecurityPolicy = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; " +
	"style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"

// inlineTypes are the content types the spec allows to be served with
// Content-Disposition: inline ("Serving inline content"); anything else is
// an attachment.
var inlineTypes = map[string]bool{
	"text/css": true, "text/plain": true, "text/csv": true,
	"application/json": true, "application/ld+json": true,
	"image/jpeg": true, "image/gif": true, "image/png": true, "image/apng": true, "image/webp": true, "image/avif": true,
	"video/mp4": true, "video/webm": true, "video/ogg": true, "video/quicktime": true,
	"audio/mp4": true, "audio/webm": true, "audio/aac": true, "audio/mpeg": true, "audio/ogg": true,
	"audio/wave": true, "audio/wav": true, "audio/x-wav": true, "audio/x-pn-wav": true, "audio/flac": true, "audio/x-flac": true,
}

// contentDisposition is inline for the safe types and attachment otherwise,
// with the file name when there is one (RFC 2231-encoded when not ASCII).
func contentDisposition(contentType, filename string) string {
	kind := "attachment"
	if mt, _, err := mime.ParseMediaType(contentType); err == nil && inlineTypes[strings.ToLower(mt)] {
		kind = "inline"
	}
	return dispositionWithName(kind, filename)
}

func dispositionWithName(kind, filename string) string {
	if filename == "" {
		return kind
	}
	if v := mime.FormatMediaType(kind, map[string]string{"filename": filename}); v != "" {
		return v
	}
	return kind
}

// setMediaHeaders sets the headers every served file gets.
func setMediaHeaders(h http.Header, contentType, disposition, sha256 string, authenticated bool) {
	h.Set("Content-Type", contentType)
	h.Set("Content-Disposition", disposition)
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
	// Content behind an mxc:// URI never changes.
	if authenticated {
		h.Set("Cache-Control", "private, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	}
	if sha256 != "" {
		h.Set("ETag", `"`+sha256+`"`)
	}
}

// download serves GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]
// and the deprecated /_matrix/media/v3/download. allow_redirect is ignored:
// local media is always served directly.
func (m *Media) download(w http.ResponseWriter, r *http.Request, s *accounts.Session) error {
	timeout, err := timeoutParam(r)
	if err != nil {
		return err
	}
	serverName := pathVar(r, "serverName")
	if err := checkAllowRemote(r, serverName, m.serverName); err != nil {
		return err
	}
	// A download on the deprecated unauthenticated path asks another server
	// on its deprecated path first, as Synapse does.
	med, err := m.lookup(r.Context(), serverName, pathVar(r, "mediaId"), timeout, s == nil)
	if err != nil {
		return err
	}
	name := med.UploadName
	if override, ok := optionalVar(r, "fileName"); ok {
		name = override
	}
	return m.serveFile(w, r, med.SHA256, med.ContentType, contentDisposition(med.ContentType, name),
		time.UnixMilli(med.UploadedTS), s != nil)
}

// serveFile streams stored content with the media headers (and Range and
// conditional request support).
func (m *Media) serveFile(w http.ResponseWriter, r *http.Request, sha256, contentType, disposition string, modTime time.Time, authenticated bool) error {
	f, err := m.store.Open(sha256)
	if errors.Is(err, fs.ErrNotExist) {
		m.log.WithField("sha256", sha256).Error("media file missing from the store")
		return errNotFound()
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	setMediaHeaders(w.Header(), contentType, disposition, sha256, authenticated)
	http.ServeContent(w, r, "", modTime, f)
	return nil
}

// checkAllowRemote refuses another server's media when the request says
// allow_remote=false (404, as for unknown media).
func checkAllowRemote(r *http.Request, serverName, self string) error {
	if serverName != self && r.URL.Query().Get("allow_remote") == "false" {
		return httputil.NotFound("Remote media is not fetched for this request (allow_remote=false)")
	}
	return nil
}
