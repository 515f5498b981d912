package mediaapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

// thumbSize is one requested thumbnail.
type thumbSize struct {
	w, h   int
	method string
}

// standardSizes are generated at upload (the spec's recommended set).
var standardSizes = []thumbSize{
	{32, 32, "crop"}, {96, 96, "crop"}, {320, 240, "scale"}, {640, 480, "scale"}, {800, 600, "scale"},
}

const (
	// maxThumbDim clamps requested thumbnail sides.
	maxThumbDim = 4096
	// maxThumbsPerMedia bounds the thumbnails cached per media, so arbitrary
	// sizes cannot fill the disk; past it the closest stored one is served.
	maxThumbsPerMedia = 32
	// maxConcurrentDecodes bounds memory: each decode holds a full image.
	maxConcurrentDecodes = 2
)

// thumbnailer makes and caches thumbnails.
type thumbnailer struct {
	m   *Media
	sem chan struct{}
	// locks serialises generation per media, so concurrent requests (and
	// the upload's pre-generation) decode an image once.
	locks keyedLocks
}

func newThumbnailer(m *Media) *thumbnailer {
	return &thumbnailer{m: m, sem: make(chan struct{}, maxConcurrentDecodes)}
}

// keyedLocks is a mutex per key, dropped when nobody holds or waits for it.
type keyedLocks struct {
	mu sync.Mutex
	m  map[string]*keyedLock
}

type keyedLock struct {
	mu   sync.Mutex
	refs int
}

// lock locks key and returns the unlock function.
func (k *keyedLocks) lock(key string) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyedLock{}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}

// made is one generated thumbnail, staged or pointing at the original.
type made struct {
	size        thumbSize
	w, h        int
	contentType string
	sha256      string
	bytes       int64
	staged      *Staged
}

// generate decodes the media once and renders every size. When the image
// is no larger than a size asks, the original content stands in for it
// (except GIFs, re-encoded as a still PNG so no animation is served).
func (t *thumbnailer) generate(ctx context.Context, med *storage.Media, sizes []thumbSize) ([]made, error) {
	select {
	case t.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-t.sem }()
	f, err := t.m.store.Open(med.SHA256)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	src, err := decodeSource(f)
	if err != nil {
		return nil, err
	}
	var out []made
	discard := func() {
		for _, o := range out {
			o.staged.Discard()
		}
	}
	plans := make([]plan, len(sizes))
	for i, sz := range sizes {
		plans[i] = makePlan(src.w, src.h, sz.w, sz.h, sz.method)
	}
	works, workPlans := reduce(src, plans)
	for i, sz := range sizes {
		p := plans[i]
		if p.original && src.format != "gif" && src.orient == 1 {
			out = append(out, made{size: sz, w: src.w, h: src.h, contentType: formatContentType(src.format),
				sha256: med.SHA256, bytes: med.Size})
			continue
		}
		data, ct, err := encodeThumbnail(render(works[i], workPlans[i]), src.format)
		if err != nil {
			discard()
			return nil, err
		}
		st, err := t.m.store.Stage(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			discard()
			return nil, err
		}
		out = append(out, made{size: sz, w: p.w, h: p.h, contentType: ct, sha256: st.SHA256, bytes: st.Size, staged: st})
	}
	return out, nil
}

// save stores generated thumbnails and the media's thumbnail state.
func (t *thumbnailer) save(ctx context.Context, med *storage.Media, out []made) ([]storage.MediaThumbnail, error) {
	now := t.m.now().UnixMilli()
	rows := make([]storage.MediaThumbnail, len(out))
	err := t.m.db.Write(ctx, func(tx *storage.Tx) error {
		for i, o := range out {
			if o.staged != nil {
				if err := t.m.store.Commit(tx, o.staged); err != nil {
					return err
				}
			}
			rows[i] = storage.MediaThumbnail{
				Origin: med.Origin, MediaID: med.MediaID, ReqWidth: o.size.w, ReqHeight: o.size.h, Method: o.size.method,
				Width: o.w, Height: o.h, ContentType: o.contentType, Size: o.bytes, SHA256: o.sha256, CreatedTS: now,
			}
			if err := tx.PutMediaThumbnail(ctx, rows[i]); err != nil {
				return err
			}
		}
		return tx.SetMediaThumbState(ctx, med.Origin, med.MediaID, storage.ThumbOK)
	})
	for _, o := range out {
		o.staged.Discard()
	}
	return rows, err
}

// fail records that the media cannot be thumbnailed, so later requests do
// not decode it again.
func (t *thumbnailer) fail(ctx context.Context, med *storage.Media, cause error) {
	state := storage.ThumbNone
	if errors.Is(cause, errTooManyPixels) {
		state = storage.ThumbTooLarge
	}
	err := t.m.db.Write(ctx, func(tx *storage.Tx) error {
		return tx.SetMediaThumbState(ctx, med.Origin, med.MediaID, state)
	})
	if err != nil {
		t.m.log.WithError(err).Warn("saving thumbnail state")
	}
}

// pregenerate makes the standard sizes for a new upload.
func (t *thumbnailer) pregenerate(ctx context.Context, med *storage.Media) error {
	unlock := t.locks.lock(med.MediaID)
	defer unlock()
	existing, err := t.m.db.MediaThumbnails(ctx, med.Origin, med.MediaID)
	if err != nil {
		return err
	}
	var need []thumbSize
	for _, sz := range standardSizes {
		if findThumb(existing, sz) == nil {
			need = append(need, sz)
		}
	}
	if len(need) == 0 {
		return nil
	}
	out, err := t.generate(ctx, med, need)
	if errors.Is(err, errCannotThumbnail) || errors.Is(err, errTooManyPixels) {
		t.fail(ctx, med, err)
		return nil
	}
	if err != nil {
		return err
	}
	_, err = t.save(ctx, med, out)
	return err
}

func findThumb(list []storage.MediaThumbnail, sz thumbSize) *storage.MediaThumbnail {
	for i := range list {
		if list[i].ReqWidth == sz.w && list[i].ReqHeight == sz.h && list[i].Method == sz.method {
			return &list[i]
		}
	}
	return nil
}

// closest picks, among stored thumbnails, the smallest that is at least as
// large as asked (preferring the same method), else the largest.
func closest(list []storage.MediaThumbnail, sz thumbSize) *storage.MediaThumbnail {
	var best *storage.MediaThumbnail
	better := func(a, b *storage.MediaThumbnail) bool {
		aBig := a.Width >= sz.w && a.Height >= sz.h
		bBig := b.Width >= sz.w && b.Height >= sz.h
		if aBig != bBig {
			return aBig
		}
		if (a.Method == sz.method) != (b.Method == sz.method) {
			return a.Method == sz.method
		}
		if aBig {
			return a.Width*a.Height < b.Width*b.Height
		}
		return a.Width*a.Height > b.Width*b.Height
	}
	for i := range list {
		if best == nil || better(&list[i], best) {
			best = &list[i]
		}
	}
	return best
}

// get returns the thumbnail for a size, generating and caching it on demand.
func (t *thumbnailer) get(ctx context.Context, med *storage.Media, sz thumbSize) (*storage.MediaThumbnail, error) {
	existing, err := t.m.db.MediaThumbnails(ctx, med.Origin, med.MediaID)
	if err != nil {
		return nil, err
	}
	if th := findThumb(existing, sz); th != nil {
		return th, nil
	}
	unlock := t.locks.lock(med.MediaID)
	defer unlock()
	// Another request (or the upload) may have made it meanwhile.
	cur, err := t.m.db.Media(ctx, med.Origin, med.MediaID)
	if err != nil {
		return nil, err
	}
	switch cur.ThumbState {
	case storage.ThumbNone:
		return nil, errCannotThumbnail
	case storage.ThumbTooLarge:
		return nil, errTooManyPixels
	}
	if existing, err = t.m.db.MediaThumbnails(ctx, med.Origin, med.MediaID); err != nil {
		return nil, err
	}
	if th := findThumb(existing, sz); th != nil {
		return th, nil
	}
	if len(existing) >= maxThumbsPerMedia {
		return closest(existing, sz), nil
	}
	out, err := t.generate(ctx, cur, []thumbSize{sz})
	if errors.Is(err, errCannotThumbnail) || errors.Is(err, errTooManyPixels) {
		t.fail(ctx, cur, err)
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	rows, err := t.save(ctx, cur, out)
	if err != nil {
		return nil, err
	}
	return &rows[0], nil
}

// dimParam reads a required positive integer query parameter.
func dimParam(r *http.Request, name string) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, httputil.MissingParam("Missing %s", name)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, httputil.InvalidParam("%s must be a positive integer", name)
	}
	return min(n, maxThumbDim), nil
}

func cannotThumbnail() error {
	return httputil.Unknown("Cannot generate thumbnails for the requested content")
}

// thumbnail serves GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}
// and the deprecated /_matrix/media/v3/thumbnail. Thumbnails are never
// animated (animated=true is treated as false, as the spec allows).
func (m *Media) thumbnail(w http.ResponseWriter, r *http.Request, s *accounts.Session) error {
	width, err := dimParam(r, "width")
	if err != nil {
		return err
	}
	height, err := dimParam(r, "height")
	if err != nil {
		return err
	}
	method := r.URL.Query().Get("method")
	switch method {
	case "":
		method = "scale"
	case "crop", "scale":
	default:
		return httputil.InvalidParam("method must be crop or scale")
	}
	timeout, err := timeoutParam(r)
	if err != nil {
		return err
	}
	med, err := m.lookup(r.Context(), pathVar(r, "serverName"), pathVar(r, "mediaId"), timeout)
	if err != nil {
		return err
	}
	if !thumbnailable(med.ContentType) {
		return cannotThumbnail()
	}
	th, err := m.thumbs.get(r.Context(), med, thumbSize{width, height, method})
	switch {
	case errors.Is(err, errTooManyPixels):
		return httputil.TooLarge("Content is too large to thumbnail")
	case errors.Is(err, errCannotThumbnail):
		return cannotThumbnail()
	case errors.Is(err, fs.ErrNotExist):
		m.log.WithField("sha256", med.SHA256).Error("media file missing from the store")
		return errNotFound()
	case err != nil:
		return fmt.Errorf("thumbnail of %s: %w", med.MediaID, err)
	}
	ext := strings.TrimPrefix(th.ContentType, "image/")
	if ext == "jpeg" {
		ext = "jpg"
	}
	return m.serveFile(w, r, th.SHA256, th.ContentType, dispositionWithName("inline", "thumbnail."+ext),
		time.UnixMilli(th.CreatedTS), s != nil)
}
