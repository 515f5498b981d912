// Package mediaapi serves the content repository: uploads (direct and
// async), downloads and thumbnails on the authenticated
// /_matrix/client/v1/media paths and the deprecated /_matrix/media ones, the
// media config and URL previews. Files live in a content-addressed store
// under the media path; metadata lives in storage.
package mediaapi

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/sirupsen/logrus"

	"matrixhs/config"
	"matrixhs/internal/accounts"
	"matrixhs/internal/auth"
	"matrixhs/internal/httputil"
	"matrixhs/internal/matrixerr"
	"matrixhs/storage"
)

const (
	// defaultTimeout and maxTimeout bound timeout_ms, the wait for a
	// pending async upload.
	defaultTimeout = 20 * time.Second
	maxTimeout     = 60 * time.Second
	// pendingLifetime is how long a created mxc:// URI waits for its content.
	pendingLifetime = 24 * time.Hour
	// maxPendingPerUser bounds a user's pending async uploads.
	maxPendingPerUser = 50
)

// Options tune the media API beyond its config.
type Options struct {
	// Now replaces time.Now (tests).
	Now func() time.Time
	// Federation fetches other servers' media and authenticates their
	// requests for ours (nil: no federation; other servers' media is not
	// found).
	Federation Federation
}

// Media is the content repository.
type Media struct {
	serverName string
	maxUpload  int64
	quota      int64
	// thumbMemory is the memory thumbnailing may use at once.
	thumbMemory int64
	db          *storage.DB
	authn       *auth.Auth
	store       *Store
	log         logrus.FieldLogger
	now         func() time.Time

	waiters  waiters
	thumbs   *thumbnailer
	fed      Federation // nil without federation
	fetching fetches
	previews *previewer // nil when URL previews are off

	// bg tracks background thumbnail generation, so Close can wait for it.
	bgMu   sync.Mutex
	bg     sync.WaitGroup
	closed bool
}

// New opens the media store and builds the API.
func New(cfg *config.Config, db *storage.DB, authn *auth.Auth, log logrus.FieldLogger, opts Options) (*Media, error) {
	store, err := OpenStore(cfg.Media.Path)
	if err != nil {
		return nil, err
	}
	m := &Media{
		serverName:  cfg.Server.Name,
		maxUpload:   cfg.Media.MaxUploadBytes,
		thumbMemory: cfg.Media.ThumbnailMemoryBytes,
		quota:       cfg.Media.QuotaBytesPerUser,
		db:          db,
		authn:       authn,
		store:       store,
		log:         log,
		now:         opts.Now,
		fed:         opts.Federation,
	}
	if m.now == nil {
		m.now = time.Now
	}
	m.waiters.m = map[string]*waiter{}
	m.thumbs = newThumbnailer(m)
	if cfg.Media.URLPreviewEnabled {
		m.previews = newPreviewer(m, cfg.PreviewFilter())
	}
	return m, nil
}

// Close waits for background thumbnail generation. Call it after the HTTP
// server stopped and before the database closes.
func (m *Media) Close() {
	m.bgMu.Lock()
	m.closed = true
	m.bgMu.Unlock()
	m.bg.Wait()
}

// Wait blocks until background work queued so far is done (tests).
func (m *Media) Wait() { m.bg.Wait() }

// Store is the content store (the admin CLI and tests inspect it).
func (m *Media) Store() *Store { return m.store }

// background runs f unless the API is closing.
func (m *Media) background(f func()) {
	m.bgMu.Lock()
	defer m.bgMu.Unlock()
	if m.closed {
		return
	}
	m.bg.Add(1)
	go func() {
		defer m.bg.Done()
		f()
	}()
}

// Register adds every media endpoint to the server's route table.
func (m *Media) Register(rt *httputil.Router) {
	get := []string{http.MethodGet, http.MethodHead}
	legacy := []string{"/_matrix/media/v3", "/_matrix/media/r0"}
	authed := "/_matrix/client/v1/media"
	for _, p := range legacy {
		// Uploads stay under /_matrix/media (spec v1.11) and need a token.
		rt.Handle(p+"/upload", m.auth(m.upload), http.MethodPost)
		// Deprecated unauthenticated downloads.
		rt.Handle(p+"/download/{serverName}/{mediaId}", m.noAuth(m.download), get...)
		rt.Handle(p+"/download/{serverName}/{mediaId}/{fileName}", m.noAuth(m.download), get...)
		rt.Handle(p+"/thumbnail/{serverName}/{mediaId}", m.noAuth(m.thumbnail), get...)
		// The spec gives these two a token requirement even on the old paths.
		rt.Handle(p+"/config", m.auth(m.config), http.MethodGet)
		rt.Handle(p+"/preview_url", m.previewRoute(), http.MethodGet)
	}
	rt.Handle("/_matrix/media/v3/upload/{serverName}/{mediaId}", m.auth(m.uploadToMXC), http.MethodPut)
	rt.Handle("/_matrix/media/v1/create", m.auth(m.createMXC), http.MethodPost)

	rt.Handle(authed+"/download/{serverName}/{mediaId}", m.auth(m.download), get...)
	rt.Handle(authed+"/download/{serverName}/{mediaId}/{fileName}", m.auth(m.download), get...)
	rt.Handle(authed+"/thumbnail/{serverName}/{mediaId}", m.auth(m.thumbnail), get...)
	rt.Handle(authed+"/config", m.auth(m.config), http.MethodGet)
	rt.Handle(authed+"/preview_url", m.previewRoute(), http.MethodGet)
	m.adminRoutes(rt)
}

// handler is a media endpoint: it writes its own response (bytes or JSON)
// and returns an error only when it wrote nothing.
type handler func(w http.ResponseWriter, r *http.Request, s *accounts.Session) error

func (h handler) serve(w http.ResponseWriter, r *http.Request) {
	if err := h(w, r, auth.Session(r.Context())); err != nil {
		httputil.WriteError(w, r, matrixerr.From(err))
	}
}

// auth serves h to authenticated users (the server's one middleware).
func (m *Media) auth(h handler) http.Handler { return m.authn.Require(http.HandlerFunc(h.serve)) }

// noAuth serves a deprecated endpoint that needs no token.
func (m *Media) noAuth(h handler) http.Handler { return http.HandlerFunc(h.serve) }

// config serves GET /_matrix/client/v1/media/config (and the deprecated
// /_matrix/media/v3/config).
func (m *Media) config(w http.ResponseWriter, _ *http.Request, _ *accounts.Session) error {
	httputil.WriteJSON(w, http.StatusOK, map[string]int64{"m.upload.size": m.maxUpload})
	return nil
}

func pathVar(r *http.Request, name string) string { return httputil.PathVar(r, name) }

func optionalVar(r *http.Request, name string) (string, bool) {
	return httputil.OptionalPathVar(r, name)
}

// newMediaID returns 144 random bits in the spec's media ID alphabet
// (URL-safe base64: A-Z a-z 0-9 - _).
func newMediaID() string {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// validMediaID applies the spec's character whitelist (A-Za-z0-9_-).
func validMediaID(id string) bool {
	if id == "" || len(id) > 255 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// mxc renders an mxc:// URI of local media.
func (m *Media) mxc(mediaID string) string { return "mxc://" + m.serverName + "/" + mediaID }

// errNotFound is the answer for unknown, remote or malformed media.
func errNotFound() error { return httputil.NotFound("Media not found") }

// lookup resolves {serverName}/{mediaId}: local media once uploaded
// (waiting up to timeout for a pending async upload), another server's
// through this server's copy of it (fetched first when there is none;
// legacyFirst: through the other server's deprecated download path first).
func (m *Media) lookup(ctx context.Context, serverName, mediaID string, timeout time.Duration, legacyFirst bool) (*storage.Media, error) {
	if _, _, ok := spec.ParseAndValidateServerName(spec.ServerName(serverName)); !ok || !validMediaID(mediaID) {
		return nil, errNotFound()
	}
	var med *storage.Media
	var err error
	if serverName != m.serverName {
		med, err = m.remoteMedia(ctx, serverName, mediaID, legacyFirst)
	} else {
		med, err = m.lookupLocal(ctx, mediaID, timeout)
	}
	if err == nil && med.QuarantinedBy != "" {
		return nil, errNotFound() // an admin quarantined it (adminapi.go)
	}
	return med, err
}

// lookupLocal resolves a local media ID to uploaded media, waiting up to
// timeout for a pending async upload.
func (m *Media) lookupLocal(ctx context.Context, mediaID string, timeout time.Duration) (*storage.Media, error) {
	if !validMediaID(mediaID) {
		return nil, errNotFound()
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		wake, release := m.waiters.wait(mediaID)
		med, err := m.db.Media(ctx, m.serverName, mediaID)
		if errors.Is(err, storage.ErrNotFound) {
			release()
			return nil, errNotFound()
		}
		if err != nil {
			release()
			return nil, err
		}
		if med.QuarantinedBy != "" {
			release()
			return nil, errNotFound()
		}
		if !med.Pending() {
			release()
			return med, nil
		}
		if med.UnusedExpiresTS <= m.now().UnixMilli() {
			release()
			return nil, errNotFound()
		}
		select {
		case <-wake:
		case <-time.After(time.Second): // re-check (e.g. expiry)
		case <-timer.C:
			release()
			return nil, &httputil.Error{Status: http.StatusGatewayTimeout, Code: "M_NOT_YET_UPLOADED", Msg: "Content has not yet been uploaded"}
		case <-ctx.Done():
			release()
			return nil, ctx.Err()
		}
		release()
	}
}

// waiters wakes downloads waiting for an async upload to complete.
type waiters struct {
	mu sync.Mutex
	m  map[string]*waiter
}

type waiter struct {
	ch   chan struct{}
	refs int
}

// wait returns a channel closed when mediaID is uploaded, and a release
// function to call when done waiting.
func (ws *waiters) wait(mediaID string) (<-chan struct{}, func()) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	w := ws.m[mediaID]
	if w == nil {
		w = &waiter{ch: make(chan struct{})}
		ws.m[mediaID] = w
	}
	w.refs++
	return w.ch, func() {
		ws.mu.Lock()
		defer ws.mu.Unlock()
		w.refs--
		if w.refs == 0 && ws.m[mediaID] == w {
			delete(ws.m, mediaID)
		}
	}
}

// wake signals that mediaID has its content.
func (ws *waiters) wake(mediaID string) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if w := ws.m[mediaID]; w != nil {
		close(w.ch)
		delete(ws.m, mediaID)
	}
}

// timeoutParam reads timeout_ms (default 20 s, capped at 60 s).
func timeoutParam(r *http.Request) (time.Duration, error) {
	v := r.URL.Query().Get("timeout_ms")
	if v == "" {
		return defaultTimeout, nil
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if errors.Is(err, strconv.ErrRange) && v[0] != '-' {
		return maxTimeout, nil
	}
	if err != nil || ms < 0 {
		return 0, httputil.InvalidParam("timeout_ms must be a non-negative integer")
	}
	if ms >= maxTimeout.Milliseconds() {
		return maxTimeout, nil
	}
	return time.Duration(ms) * time.Millisecond, nil
}
