package mediaapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/internal/safenet"
	"matrixhs/storage"
)

const (
	// previewTimeout bounds one preview, page and image together.
	previewTimeout = 10 * time.Second
	// maxPreviewHTML is how much of a page is read for its metadata.
	maxPreviewHTML = 1 << 20
	// maxPreviewImage bounds an og:image download (also capped by max_upload_bytes).
	maxPreviewImage = 10 << 20
	// previewCacheFor is how long a fetched preview is served from storage.
	previewCacheFor = time.Hour
	// maxConcurrentPreviews bounds outbound fetches.
	maxConcurrentPreviews = 4
	maxPreviewURLLen      = 2048
	previewUserAgent      = "matrixhs URL preview (Matrix homeserver)"
)

// previewer fetches and caches URL previews over the SSRF-safe client.
type previewer struct {
	m      *Media
	client *http.Client
	sem    chan struct{}
	locks  keyedLocks
}

// maxRedirects bounds the redirects a preview follows; each hop is dialled
// (and so vetted) anew.
const maxRedirects = 5

func newPreviewer(m *Media, filter *safenet.Filter) *previewer {
	return &previewer{
		m:      m,
		client: safenet.NewClient(filter, safenet.ClientOptions{Timeout: previewTimeout, MaxRedirects: maxRedirects}),
		sem:    make(chan struct{}, maxConcurrentPreviews),
	}
}

// previewRoute serves GET /_matrix/client/v1/media/preview_url (and the
// deprecated /_matrix/media/v3/preview_url). When previews are off (the
// default) the endpoint does not exist: 404 M_UNRECOGNIZED, as Synapse
// answers when url_preview_enabled is false.
func (m *Media) previewRoute() http.Handler {
	if m.previews == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			httputil.WriteError(w, r, httputil.Unrecognized("URL previews are disabled on this server"))
		})
	}
	return m.auth(m.preview)
}

func (m *Media) preview(w http.ResponseWriter, r *http.Request, _ *accounts.Session) error {
	raw := r.URL.Query().Get("url")
	if raw == "" {
		return httputil.MissingParam("Missing url")
	}
	u, err := previewURL(raw)
	if err != nil {
		return err
	}
	og, err := m.previews.get(r.Context(), u)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(og)
	return nil
}

// previewURL checks a URL to preview: absolute http(s) with a host. The
// fragment is dropped (it never reaches the server and would split the cache).
func previewURL(raw string) (*url.URL, error) {
	if len(raw) > maxPreviewURLLen {
		return nil, httputil.InvalidParam("url is too long")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return nil, httputil.InvalidParam("url must be an absolute http or https URL")
	}
	if u.User != nil {
		return nil, httputil.InvalidParam("url must not carry credentials")
	}
	u.Fragment, u.RawFragment = "", ""
	return u, nil
}

// get returns the preview JSON of u from the cache, or fetches it.
func (p *previewer) get(ctx context.Context, u *url.URL) (json.RawMessage, error) {
	nu := *u
	nu.Fragment, nu.RawFragment = "", ""
	u = &nu
	key := u.String()
	if og, ts, err := p.m.db.URLPreview(ctx, key); err == nil && p.m.now().Sub(time.UnixMilli(ts)) < previewCacheFor {
		return og, nil
	} else if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	unlock := p.locks.lock(key)
	defer unlock()
	if og, ts, err := p.m.db.URLPreview(ctx, key); err == nil && p.m.now().Sub(time.UnixMilli(ts)) < previewCacheFor {
		return og, nil
	}
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-p.sem }()
	fctx, cancel := context.WithTimeout(ctx, previewTimeout)
	defer cancel()
	og, err := p.fetch(fctx, u)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(og)
	if err != nil {
		return nil, err
	}
	now := p.m.now().UnixMilli()
	if err := p.m.db.Write(ctx, func(tx *storage.Tx) error { return tx.PutURLPreview(ctx, key, now, body) }); err != nil {
		return nil, err
	}
	return body, nil
}

// fetchError maps a failed request: a refused address is 403 M_FORBIDDEN,
// anything else 502.
func fetchError(u *url.URL, err error) error {
	if blocked, ok := safenet.IsBlocked(err); ok {
		return httputil.Forbidden("URL previews may not reach %s: it is not a public address", blocked.IP)
	}
	return &httputil.Error{Status: http.StatusBadGateway, Code: "M_UNKNOWN", Msg: fmt.Sprintf("Could not fetch %s", u.Redacted())}
}

func (p *previewer) request(ctx context.Context, u *url.URL, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, httputil.InvalidParam("bad url")
	}
	req.Header.Set("User-Agent", previewUserAgent)
	req.Header.Set("Accept", accept)
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, fetchError(u, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, &httputil.Error{Status: http.StatusBadGateway, Code: "M_UNKNOWN",
			Msg: fmt.Sprintf("%s answered %d", u.Redacted(), resp.StatusCode)}
	}
	return resp, nil
}

// fetch builds the preview: Open Graph data of an HTML page (its og:image
// downloaded into the media store), or the image itself for an image URL.
func (p *previewer) fetch(ctx context.Context, u *url.URL) (map[string]any, error) {
	resp, err := p.request(ctx, u, "text/html,application/xhtml+xml;q=0.9,image/*;q=0.8,*/*;q=0.1")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	ct := resp.Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	switch {
	case mt == "text/html" || mt == "application/xhtml+xml":
		og := parseOpenGraph(io.LimitReader(resp.Body, maxPreviewHTML), ct, resp.Request.URL)
		resp.Body.Close()
		if img, ok := og["og:image"].(string); ok {
			iu, _ := url.Parse(img)
			if err := p.fetchImage(ctx, iu, og); err != nil {
				p.m.log.WithError(err).Debug("preview image not fetched")
				for _, k := range []string{"og:image", "og:image:width", "og:image:height", "og:image:type", "matrix:image:size"} {
					delete(og, k)
				}
			}
		}
		return og, nil
	case strings.HasPrefix(mt, "image/"):
		og := map[string]any{}
		if err := p.storeImage(ctx, resp, og); err != nil {
			p.m.log.WithError(err).Debug("preview image not stored")
			return map[string]any{}, nil
		}
		return og, nil
	default:
		return map[string]any{}, nil
	}
}

// fetchImage downloads a page's og:image over the same vetted client.
func (p *previewer) fetchImage(ctx context.Context, u *url.URL, og map[string]any) error {
	if u == nil || (u.Scheme != "http" && u.Scheme != "https") {
		return errors.New("bad image url")
	}
	resp, err := p.request(ctx, u, "image/*")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return p.storeImage(ctx, resp, og)
}

// storeImage saves an image response as local media and fills the og:image
// fields with its mxc:// URI, type, size and dimensions.
func (p *previewer) storeImage(ctx context.Context, resp *http.Response, og map[string]any) error {
	ct := normalizeContentType(resp.Header.Get("Content-Type"))
	if mt, _, _ := mime.ParseMediaType(ct); !strings.HasPrefix(mt, "image/") {
		return fmt.Errorf("og:image is %s, not an image", ct)
	}
	limit := min(int64(maxPreviewImage), p.m.maxUpload)
	if resp.ContentLength > limit {
		return errTooLarge
	}
	st, err := p.m.store.Stage(resp.Body, limit)
	if err != nil {
		return err
	}
	defer st.Discard()
	now := p.m.now().UnixMilli()
	med := storage.Media{
		Origin: p.m.serverName, MediaID: newMediaID(), CreatedTS: now, UploadedTS: now,
		ContentType: ct, Size: st.Size, SHA256: st.SHA256,
	}
	err = p.m.db.Write(ctx, func(tx *storage.Tx) error {
		if err := tx.InsertMedia(ctx, med); err != nil {
			return err
		}
		return p.m.store.Commit(tx, st)
	})
	if err != nil {
		return err
	}
	p.m.uploaded(&med)
	og["og:image"] = p.m.mxc(med.MediaID)
	og["og:image:type"] = ct
	og["matrix:image:size"] = st.Size
	if f, err := p.m.store.Open(st.SHA256); err == nil {
		if cfg, _, err := image.DecodeConfig(f); err == nil {
			og["og:image:width"], og["og:image:height"] = cfg.Width, cfg.Height
		}
		f.Close()
	}
	return nil
}
