package mediaapi

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"io/fs"
	"net/http"
	"runtime"
	"runtime/debug"
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
	// maxConcurrentDecodes bounds the CPU thumbnailing takes.
	maxConcurrentDecodes = 2
	// returnMemoryAbove: after a decode this large the memory goes back to
	// the OS at once (a full GC) instead of staying in the heap.
	returnMemoryAbove = 16 << 20
)

// errThumbTooLarge: one requested thumbnail would need more memory than the
// budget (the media itself may still have smaller thumbnails).
var errThumbTooLarge = errors.New("thumbnail too large to render")

// thumbnailer makes and caches thumbnails.
type thumbnailer struct {
	m      *Media
	sem    chan struct{}
	budget *memBudget
	// locks serialises generation per media, so concurrent requests (and
	// the upload's pre-generation) decode an image once.
	locks keyedLocks
}

func newThumbnailer(m *Media) *thumbnailer {
	return &thumbnailer{m: m, sem: make(chan struct{}, maxConcurrentDecodes), budget: newMemBudget(m.thumbMemory)}
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
// (except GIFs, re-encoded as a still PNG so no animation is served). The
// header is probed first: an image whose decoding needs more than the
// memory budget is errImageTooLarge, a size whose rendering would is
// errThumbTooLarge; otherwise the work waits for room in the budget.
func (t *thumbnailer) generate(ctx context.Context, med *storage.Media, sizes []thumbSize) ([]made, error) {
	f, err := t.m.store.Open(med.SHA256)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	in, err := probe(f)
	if err != nil {
		return nil, err
	}
	plans, cost, err := admit(in, sizes, t.budget.capacity)
	if err != nil {
		return nil, err
	}
	select {
	case t.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-t.sem }()
	if err := t.budget.acquire(ctx, cost); err != nil {
		return nil, err
	}
	defer t.budget.release(cost)
	out, err := t.renderAll(f, med, in, sizes, plans)
	if cost > returnMemoryAbove {
		// The decoded image is garbage now: give its memory back before
		// the next large decode may start.
		debug.FreeOSMemory()
	}
	return out, err
}

// admit plans the sizes for a probed image and returns the memory they
// need: errImageTooLarge when the image alone does not fit the budget,
// errThumbTooLarge when one of the sizes does not.
func admit(in *imageInfo, sizes []thumbSize, budget int64) ([]plan, int64, error) {
	if in.decodeBytes > budget || in.heldBytes > budget {
		return nil, 0, fmt.Errorf("%w: %dx%d %s needs %d MiB", errImageTooLarge, in.rawW, in.rawH, in.format, max(in.decodeBytes, in.heldBytes)>>20)
	}
	plans := make([]plan, len(sizes))
	for i, sz := range sizes {
		plans[i] = makePlan(in.w, in.h, sz.w, sz.h, sz.method)
	}
	cost := in.cost(plans)
	if cost > budget {
		return nil, 0, fmt.Errorf("%w: needs %d MiB", errThumbTooLarge, cost>>20)
	}
	return plans, cost, nil
}

// renderAll decodes a probed image and stages a thumbnail for each plan.
func (t *thumbnailer) renderAll(f io.ReadSeeker, med *storage.Media, in *imageInfo, sizes []thumbSize, plans []plan) ([]made, error) {
	src, err := decodeProbed(f, in)
	if err != nil {
		return nil, err
	}
	if in.decodeBytes-in.heldBytes > returnMemoryAbove {
		// The decoder's working memory (e.g. progressive JPEG coefficients)
		// is garbage: collect it before the reductions are allocated.
		runtime.GC()
	}
	var out []made
	discard := func() {
		for _, o := range out {
			o.staged.Discard()
		}
	}
	works, workPlans := reduce(src, plans)
	for i, sz := range sizes {
		p := plans[i]
		if p.original && src.format != "gif" && src.orient == 1 {
			out = append(out, made{size: sz, w: src.w, h: src.h, contentType: formatContentType(src.format),
				sha256: med.SHA256, bytes: med.Size})
			continue
		}
		st, err := t.stageThumbnail(render(works[i], workPlans[i]), src.format)
		if err != nil {
			discard()
			return nil, err
		}
		out = append(out, made{size: sz, w: p.w, h: p.h, contentType: thumbnailType(src.format), sha256: st.SHA256, bytes: st.Size, staged: st})
	}
	return out, nil
}

// stageThumbnail encodes img straight into a staged file (no buffer of the
// encoded bytes in memory).
func (t *thumbnailer) stageThumbnail(img *image.RGBA, format string) (*Staged, error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := encodeThumbnail(pw, img, format)
		pw.CloseWithError(err)
		done <- err
	}()
	// An encoded thumbnail is never larger than its raw pixels plus headers.
	st, err := t.m.store.Stage(pr, int64(len(img.Pix))+1<<20)
	pr.CloseWithError(errors.New("thumbnail staging stopped"))
	if encErr := <-done; encErr != nil && err == nil {
		st.Discard()
		err = encErr
	}
	if err != nil {
		return nil, fmt.Errorf("encoding thumbnail: %w", err)
	}
	return st, nil
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
	if errors.Is(cause, errImageTooLarge) || errors.Is(cause, errThumbTooLarge) {
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
	if errors.Is(err, errCannotThumbnail) || errors.Is(err, errImageTooLarge) || errors.Is(err, errThumbTooLarge) {
		// The standard sizes are small: if they do not fit, nothing does.
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
		return nil, errImageTooLarge
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
	if errors.Is(err, errThumbTooLarge) && len(existing) > 0 {
		// This size alone is too costly: the closest stored one will do.
		return closest(existing, sz), nil
	}
	if errors.Is(err, errCannotThumbnail) || errors.Is(err, errImageTooLarge) {
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
	serverName := pathVar(r, "serverName")
	if err := checkAllowRemote(r, serverName, m.serverName); err != nil {
		return err
	}
	th, err := m.thumbnailOf(r, serverName, pathVar(r, "mediaId"))
	if err != nil {
		return err
	}
	return m.serveFile(w, r, th.SHA256, th.ContentType, th.disposition(), time.UnixMilli(th.CreatedTS), s != nil)
}

// servedThumbnail is a thumbnail to serve.
type servedThumbnail struct {
	SHA256, ContentType string
	CreatedTS           int64
}

// disposition names the file thumbnail.<type>, inline.
func (t servedThumbnail) disposition() string {
	ext := strings.TrimPrefix(t.ContentType, "image/")
	if ext == "jpeg" {
		ext = "jpg"
	}
	return dispositionWithName("inline", "thumbnail."+ext)
}

// thumbnailOf reads a thumbnail request's parameters (width, height,
// method, timeout_ms) and returns the thumbnail of the media, made when
// there is none yet.
func (m *Media) thumbnailOf(r *http.Request, serverName, mediaID string) (servedThumbnail, error) {
	var none servedThumbnail
	width, err := dimParam(r, "width")
	if err != nil {
		return none, err
	}
	height, err := dimParam(r, "height")
	if err != nil {
		return none, err
	}
	method := r.URL.Query().Get("method")
	switch method {
	case "":
		method = "scale"
	case "crop", "scale":
	default:
		return none, httputil.InvalidParam("method must be crop or scale")
	}
	timeout, err := timeoutParam(r)
	if err != nil {
		return none, err
	}
	med, err := m.lookup(r.Context(), serverName, mediaID, timeout, false)
	if err != nil {
		return none, err
	}
	if !thumbnailable(med.ContentType) {
		return none, cannotThumbnail()
	}
	th, err := m.thumbs.get(r.Context(), med, thumbSize{width, height, method})
	switch {
	case errors.Is(err, errImageTooLarge), errors.Is(err, errThumbTooLarge), errors.Is(err, errCannotThumbnail):
		// As Synapse answers for media it cannot thumbnail.
		return none, cannotThumbnail()
	case errors.Is(err, fs.ErrNotExist):
		m.log.WithField("sha256", med.SHA256).Error("media file missing from the store")
		return none, errNotFound()
	case err != nil:
		return none, fmt.Errorf("thumbnail of %s: %w", med.MediaID, err)
	}
	return servedThumbnail{SHA256: th.SHA256, ContentType: th.ContentType, CreatedTS: th.CreatedTS}, nil
}
