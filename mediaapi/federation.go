package mediaapi

// Media across servers. Served for other servers (authenticated with
// X-Matrix): GET /_matrix/federation/v1/media/download/{mediaId} and
// /thumbnail/{mediaId}, multipart/mixed answers whose first part is the
// metadata ({}) and whose second is the content. Fetched from other
// servers when a client asks for their media: the same endpoint, falling
// back to the deprecated /_matrix/media/v3/download for servers that do not
// serve it; the copy is kept (as media of that origin) and served, and
// thumbnailed, like local media.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"time"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

// Federation is what the media repository needs of federation
// (federationapi's API implements it).
type Federation interface {
	// SignedGet sends a signed GET for path (escaped, with its query) to
	// server; the answer comes back whatever its status.
	SignedGet(ctx context.Context, server, path string) (*http.Response, error)
	// PlainGet fetches an https URL (a download's redirect), with the
	// outbound federation transport's address checks.
	PlainGet(ctx context.Context, rawURL string) (*http.Response, error)
	// RequireServer serves next to requests signed by another server.
	RequireServer(next http.Handler) http.Handler
}

// remoteFetchTimeout bounds one fetch of another server's media.
const remoteFetchTimeout = 60 * time.Second

// maxMetadataBytes bounds the JSON part of a federation download.
const maxMetadataBytes = 64 << 10

// RegisterFederation adds the federation media endpoints to a route table
// (the server's one table and the federation listener's). Without
// federation there are none.
func (m *Media) RegisterFederation(rt *httputil.Router) {
	if m.fed == nil {
		return
	}
	get := http.MethodGet
	rt.Exact(get, "/_matrix/federation/v1/media/download/{mediaId}", m.fed.RequireServer(http.HandlerFunc(handler(m.federationDownload).serve)))
	rt.Exact(get, "/_matrix/federation/v1/media/thumbnail/{mediaId}", m.fed.RequireServer(http.HandlerFunc(handler(m.federationThumbnail).serve)))
}

// federationDownload serves GET /_matrix/federation/v1/media/download/{mediaId}:
// local media only.
func (m *Media) federationDownload(w http.ResponseWriter, r *http.Request, _ *accounts.Session) error {
	timeout, err := timeoutParam(r)
	if err != nil {
		return err
	}
	med, err := m.lookupLocal(r.Context(), pathVar(r, "mediaId"), timeout)
	if err != nil {
		return err
	}
	return m.writeMultipart(w, med.SHA256, med.ContentType, contentDisposition(med.ContentType, med.UploadName))
}

// federationThumbnail serves GET /_matrix/federation/v1/media/thumbnail/{mediaId}.
func (m *Media) federationThumbnail(w http.ResponseWriter, r *http.Request, _ *accounts.Session) error {
	th, err := m.thumbnailOf(r, m.serverName, pathVar(r, "mediaId"))
	if err != nil {
		return err
	}
	return m.writeMultipart(w, th.SHA256, th.ContentType, th.disposition())
}

// writeMultipart answers with the metadata part ({}) and the content part.
func (m *Media) writeMultipart(w http.ResponseWriter, sha256, contentType, disposition string) error {
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
	mw := multipart.NewWriter(w)
	w.Header().Set("Content-Type", "multipart/mixed; boundary="+mw.Boundary())
	w.WriteHeader(http.StatusOK)
	meta, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/json"}})
	if err != nil {
		return nil // the answer has begun: nothing else can be said
	}
	if _, err := meta.Write([]byte("{}")); err != nil {
		return nil
	}
	part, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {contentType}, "Content-Disposition": {disposition}})
	if err != nil {
		return nil
	}
	if _, err := io.Copy(part, f); err != nil {
		return nil
	}
	mw.Close()
	return nil
}

// fetches runs one fetch of a remote media item at a time.
type fetches struct {
	mu    sync.Mutex
	calls map[string]*fetchCall
}

type fetchCall struct {
	done chan struct{}
	med  *storage.Media
	err  error
}

// remoteMedia returns this server's copy of another server's media,
// fetching it first when there is none (see fetchFrom for legacyFirst).
func (m *Media) remoteMedia(ctx context.Context, server, mediaID string, legacyFirst bool) (*storage.Media, error) {
	med, err := m.db.Media(ctx, server, mediaID)
	if err == nil && !med.Pending() {
		return med, nil
	}
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	if m.fed == nil {
		return nil, httputil.NotFound("Remote media is not available on this server")
	}
	key := server + "/" + mediaID
	f := &m.fetching
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]*fetchCall{}
	}
	c, busy := f.calls[key]
	if !busy {
		c = &fetchCall{done: make(chan struct{})}
		f.calls[key] = c
	}
	f.mu.Unlock()
	if !busy {
		// The fetch outlives the request that started it: others may wait on it.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), remoteFetchTimeout)
		c.med, c.err = m.fetchRemote(fctx, server, mediaID, legacyFirst)
		cancel()
		f.mu.Lock()
		delete(f.calls, key)
		f.mu.Unlock()
		close(c.done)
	}
	select {
	case <-c.done:
		return c.med, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// remoteFile is a download from another server.
type remoteFile struct {
	body        io.Reader
	contentType string
	disposition string
}

// fetchRemote downloads another server's media and keeps a copy.
func (m *Media) fetchRemote(ctx context.Context, server, mediaID string, legacyFirst bool) (*storage.Media, error) {
	log := m.log.WithField("server", server).WithField("media_id", mediaID)
	var staged *Staged
	var file remoteFile
	err := m.fetchFrom(ctx, server, mediaID, legacyFirst, func(f remoteFile) error {
		file = f
		var err error
		staged, err = m.store.Stage(f.body, m.maxUpload)
		return err
	})
	if errors.Is(err, errTooLarge) {
		return nil, &httputil.Error{Status: http.StatusBadGateway, Code: "M_TOO_LARGE", Msg: "Remote media is larger than this server accepts"}
	}
	if err != nil {
		var he *httputil.Error
		if errors.As(err, &he) {
			return nil, err
		}
		log.WithError(err).Info("fetching remote media failed")
		return nil, &httputil.Error{Status: http.StatusBadGateway, Code: "M_UNKNOWN", Msg: "Failed to fetch remote media"}
	}
	defer staged.Discard()
	name := ""
	if _, params, err := mime.ParseMediaType(file.disposition); err == nil {
		name = params["filename"]
	}
	now := m.now().UnixMilli()
	med := storage.Media{
		Origin: server, MediaID: mediaID, CreatedTS: now, UploadedTS: now,
		ContentType: normalizeContentType(file.contentType), UploadName: name, Size: staged.Size, SHA256: staged.SHA256,
	}
	err = m.db.Write(ctx, func(tx *storage.Tx) error {
		if err := tx.InsertMedia(ctx, med); err != nil {
			return err
		}
		return m.store.Commit(tx, staged)
	})
	if errors.Is(err, storage.ErrExists) {
		// Fetched meanwhile (by an earlier process): that copy stands.
		return m.db.Media(ctx, server, mediaID)
	}
	if err != nil {
		return nil, err
	}
	return &med, nil
}

// fetchFrom fetches another server's media and hands it to use: through
// the federation endpoint, or the deprecated client one for servers that
// do not serve it. With legacyFirst (a client's download on the deprecated
// unauthenticated path) the deprecated path is asked first, as Synapse
// does, then the federation endpoint when it does not answer with the
// media (servers that have frozen it).
func (m *Media) fetchFrom(ctx context.Context, server, mediaID string, legacyFirst bool, use func(remoteFile) error) error {
	if legacyFirst {
		done, err := m.fetchLegacy(ctx, server, mediaID, use)
		if done || ctx.Err() != nil {
			return err
		}
		m.log.WithError(err).WithField("server", server).WithField("media_id", mediaID).Debug("deprecated media download failed; trying the federation endpoint")
	}
	resp, err := m.fed.SignedGet(ctx, server, "/_matrix/federation/v1/media/download/"+url.PathEscape(mediaID))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return m.readMultipart(ctx, resp, use)
	}
	if legacyFirst || !unrecognized(resp) {
		return remoteStatus(resp)
	}
	_, err = m.fetchLegacy(ctx, server, mediaID, use)
	return err
}

// fetchLegacy fetches another server's media through its deprecated
// /_matrix/media/v3/download; done reports that it answered with the media
// (err is then use's).
func (m *Media) fetchLegacy(ctx context.Context, server, mediaID string, use func(remoteFile) error) (done bool, err error) {
	legacy, err := m.fed.SignedGet(ctx, server, "/_matrix/media/v3/download/"+url.PathEscape(server)+"/"+url.PathEscape(mediaID)+
		"?allow_remote=false&allow_redirect=true")
	if err != nil {
		return false, err
	}
	defer legacy.Body.Close()
	if legacy.StatusCode != http.StatusOK {
		return false, remoteStatus(legacy)
	}
	return true, use(remoteFile{body: legacy.Body, contentType: legacy.Header.Get("Content-Type"), disposition: legacy.Header.Get("Content-Disposition")})
}

// readMultipart reads a federation download: the metadata part, then the
// content or a Location to fetch it from.
func (m *Media) readMultipart(ctx context.Context, resp *http.Response, use func(remoteFile) error) error {
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || !strings.EqualFold(mt, "multipart/mixed") || params["boundary"] == "" {
		return fmt.Errorf("federation download answered with %q, not multipart/mixed", resp.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(resp.Body, params["boundary"])
	meta, err := mr.NextPart()
	if err != nil {
		return fmt.Errorf("reading the metadata part: %w", err)
	}
	if _, err := io.Copy(io.Discard, io.LimitReader(meta, maxMetadataBytes)); err != nil {
		return fmt.Errorf("reading the metadata part: %w", err)
	}
	content, err := mr.NextPart()
	if err != nil {
		return fmt.Errorf("reading the content part: %w", err)
	}
	if loc := content.Header.Get("Location"); loc != "" {
		u, err := url.Parse(loc)
		if err != nil || u.Scheme != "https" {
			return fmt.Errorf("redirect to %q: only https is followed", loc)
		}
		redirected, err := m.fed.PlainGet(ctx, u.String())
		if err != nil {
			return err
		}
		defer redirected.Body.Close()
		if redirected.StatusCode != http.StatusOK {
			return fmt.Errorf("redirect to %s answered %d", u.Redacted(), redirected.StatusCode)
		}
		return use(remoteFile{body: redirected.Body, contentType: redirected.Header.Get("Content-Type"),
			disposition: redirected.Header.Get("Content-Disposition")})
	}
	return use(remoteFile{body: content, contentType: content.Header.Get("Content-Type"), disposition: content.Header.Get("Content-Disposition")})
}

// unrecognized reports whether an answer says the endpoint is not served
// (a server from before authenticated media), as Synapse judges it: 404 or
// 405 with M_UNRECOGNIZED or a body that is not JSON (older servers), or
// 400 with M_UNRECOGNIZED (older Synapses).
func unrecognized(resp *http.Response) bool {
	if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed && resp.StatusCode != http.StatusBadRequest {
		return false
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxMetadataBytes))
	var e struct {
		Errcode string `json:"errcode"`
	}
	isJSON := bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")) && json.Unmarshal(raw, &e) == nil
	if e.Errcode == "M_UNRECOGNIZED" {
		return true
	}
	return resp.StatusCode != http.StatusBadRequest && !isJSON
}

// remoteStatus turns another server's refusal into the answer for the
// client: not found stays not found, anything else is a bad gateway.
func remoteStatus(resp *http.Response) error {
	if resp.StatusCode == http.StatusNotFound {
		return httputil.NotFound("Remote media not found")
	}
	return fmt.Errorf("remote server answered %d", resp.StatusCode)
}
