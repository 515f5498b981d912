package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	_ "golang.org/x/image/webp" // registers WebP for image.DecodeConfig
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"matrixhs/config"
	"matrixhs/internal/accounts"
	"matrixhs/tests/testserver"
)

// mediaWebP is a 120x90 one-colour lossless WebP (written by hand: there
// is no WebP encoder in Go's x/image).
var mediaWebP = []byte{
	0x52, 0x49, 0x46, 0x46, 0x1a, 0x00, 0x00, 0x00, 0x57, 0x45, 0x42, 0x50, 0x56, 0x50, 0x38, 0x4c,
	0x0d, 0x00, 0x00, 0x00, 0x2f, 0x77, 0x40, 0x16, 0x00, 0x28, 0x59, 0x91, 0x2b, 0xd3, 0xff, 0x02,
	0x00, 0x00,
}

const wantCSP = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"

// startWithConfig starts a server whose homeserver.yaml holds yaml.
func startWithConfig(t *testing.T, yaml string) *testserver.Server {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "homeserver.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return testserver.StartIn(t, dir, nil)
}

func gradient(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 100, 255})
		}
	}
	return img
}

func encodePNG(t *testing.T, w, h int) []byte {
	var buf bytes.Buffer
	if err := png.Encode(&buf, gradient(w, h)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func encodeJPEG(t *testing.T, w, h int) []byte {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, gradient(w, h), nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func encodeGIF(t *testing.T, w, h int) []byte {
	pal := color.Palette{color.Black, color.RGBA{255, 0, 0, 255}}
	var frames []*image.Paletted
	for i := 0; i < 2; i++ {
		f := image.NewPaletted(image.Rect(0, 0, w, h), pal)
		for j := range f.Pix {
			f.Pix[j] = uint8(i)
		}
		frames = append(frames, f)
	}
	var buf bytes.Buffer
	if err := gif.EncodeAll(&buf, &gif.GIF{Image: frames, Delay: []int{5, 5}}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// mediaPath builds a media URL path for an mxc:// URI.
func mediaPath(prefix, kind string, uri id.ContentURI, extra ...string) string {
	p := prefix + "/" + kind + "/" + uri.Homeserver + "/" + uri.FileID
	for _, e := range extra {
		p += "/" + e
	}
	return p
}

const (
	authedMedia = "/_matrix/client/v1/media"
	legacyMedia = "/_matrix/media/v3"
)

// get sends a GET (or HEAD) with an optional token and returns the raw response.
func get(t *testing.T, s *testserver.Server, method, path, token string) *resp {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), method, s.URL()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return send(t, req)
}

// upload posts raw bytes; length -1 sends them chunked (no Content-Length).
func upload(t *testing.T, s *testserver.Server, token, query, contentType string, body io.Reader, length int64) *resp {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), "POST", s.URL()+"/_matrix/media/v3/upload"+query, body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = length
	if length < 0 {
		req.ContentLength = -1
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return send(t, req)
}

func contentURI(t *testing.T, r *resp) id.ContentURI {
	t.Helper()
	s, _ := r.Body["content_uri"].(string)
	uri, err := id.ParseContentURI(s)
	if err != nil || uri.IsEmpty() {
		t.Fatalf("bad content_uri in %s", r.Raw)
	}
	return uri
}

// contentFiles lists the files of the content store (name = SHA-256).
func contentFiles(t *testing.T, s *testserver.Server) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	root := filepath.Join(s.Config.Media.Path, "content")
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out[d.Name()] = true
		}
		return nil
	})
	return out
}

func tempFiles(t *testing.T, s *testserver.Server) []string {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join(s.Config.Media.Path, "tmp"))
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func wantMediaHeaders(t *testing.T, r *resp, contentType, disposition string) {
	t.Helper()
	h := r.Header
	if h.Get("Content-Type") != contentType || h.Get("Content-Disposition") != disposition {
		t.Fatalf("Content-Type %q, Content-Disposition %q; want %q, %q", h.Get("Content-Type"), h.Get("Content-Disposition"), contentType, disposition)
	}
	if h.Get("Content-Security-Policy") != wantCSP || h.Get("X-Content-Type-Options") != "nosniff" ||
		h.Get("Cross-Origin-Resource-Policy") != "cross-origin" || h.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("security/CORS headers missing: %v", h)
	}
}

func TestMediaUploadDownload(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	ctx := ctxT(t)
	pngBytes := encodePNG(t, 50, 40)

	up, err := alice.UploadBytesWithName(ctx, pngBytes, "image/png", "pic.png")
	if err != nil {
		t.Fatalf("UploadBytesWithName: %v", err)
	}
	uri := up.ContentURI
	if uri.Homeserver != "hs.test" || len(uri.FileID) < 22 {
		t.Fatalf("content URI %s: want hs.test and a >= 128-bit ID", uri)
	}
	// Authenticated download through mautrix (v1.11 endpoints), byte for byte.
	got, err := alice.DownloadBytes(ctx, uri)
	if err != nil || !bytes.Equal(got, pngBytes) {
		t.Fatalf("DownloadBytes: %v (%d bytes, want %d)", err, len(got), len(pngBytes))
	}
	r := get(t, s, "GET", mediaPath(authedMedia, "download", uri), alice.AccessToken).want(t, 200, "")
	wantMediaHeaders(t, r, "image/png", `inline; filename=pic.png`)
	if r.Header.Get("Cache-Control") == "" || r.Header.Get("ETag") != `"`+sha(pngBytes)+`"` {
		t.Fatalf("caching headers: %v", r.Header)
	}
	// Legacy download, no token, on v3 and r0.
	for _, prefix := range []string{legacyMedia, "/_matrix/media/r0"} {
		r := get(t, s, "GET", mediaPath(prefix, "download", uri), "").want(t, 200, "")
		if !bytes.Equal(r.Raw, pngBytes) {
			t.Fatalf("%s download differs", prefix)
		}
		wantMediaHeaders(t, r, "image/png", `inline; filename=pic.png`)
	}
	// The file name in the path overrides the uploaded one, UTF-8 included.
	r = get(t, s, "GET", mediaPath(authedMedia, "download", uri, "other%20name.png"), alice.AccessToken).want(t, 200, "")
	wantMediaHeaders(t, r, "image/png", `inline; filename="other name.png"`)
	r = get(t, s, "GET", mediaPath(authedMedia, "download", uri, "caf%C3%A9.png"), alice.AccessToken).want(t, 200, "")
	wantMediaHeaders(t, r, "image/png", `inline; filename*=utf-8''caf%C3%A9.png`)
	// HEAD and ranges.
	r = get(t, s, "HEAD", mediaPath(authedMedia, "download", uri), alice.AccessToken).want(t, 200, "")
	if r.Header.Get("Content-Length") != fmt.Sprint(len(pngBytes)) || len(r.Raw) != 0 {
		t.Fatalf("HEAD: %v, %d body bytes", r.Header, len(r.Raw))
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", s.URL()+mediaPath(authedMedia, "download", uri), nil)
	req.Header.Set("Authorization", "Bearer "+alice.AccessToken)
	req.Header.Set("Range", "bytes=0-9")
	if r := send(t, req); r.Status != http.StatusPartialContent || !bytes.Equal(r.Raw, pngBytes[:10]) {
		t.Fatalf("range request: %d, %d bytes", r.Status, len(r.Raw))
	}

	// Unsafe types are attachments; no Content-Type means octet-stream;
	// no file name means none in the header.
	html := []byte("<script>alert(1)</script>")
	r = upload(t, s, alice.AccessToken, "?filename=x.html", "text/html; charset=utf-8", bytes.NewReader(html), int64(len(html))).want(t, 200, "")
	dl := get(t, s, "GET", mediaPath(authedMedia, "download", contentURI(t, r)), alice.AccessToken).want(t, 200, "")
	wantMediaHeaders(t, dl, "text/html; charset=utf-8", `attachment; filename=x.html`)
	r = upload(t, s, alice.AccessToken, "", "", strings.NewReader("raw"), 3).want(t, 200, "")
	dl = get(t, s, "GET", mediaPath(legacyMedia, "download", contentURI(t, r)), "").want(t, 200, "")
	wantMediaHeaders(t, dl, "application/octet-stream", "attachment")
	r = upload(t, s, alice.AccessToken, "", "text/plain", strings.NewReader("hello"), 5).want(t, 200, "")
	dl = get(t, s, "GET", mediaPath(authedMedia, "download", contentURI(t, r)), alice.AccessToken).want(t, 200, "")
	wantMediaHeaders(t, dl, "text/plain", "inline")

	// Config on both paths.
	cfg, err := alice.GetMediaConfig(ctx)
	if err != nil || cfg.UploadSize != 50<<20 {
		t.Fatalf("GetMediaConfig = %+v, %v", cfg, err)
	}
	r = get(t, s, "GET", legacyMedia+"/config", alice.AccessToken).want(t, 200, "")
	if r.Body["m.upload.size"] != float64(50<<20) {
		t.Fatalf("legacy config = %s", r.Raw)
	}
}

func TestMediaIdenticalUploadsShareOneFile(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	ctx := ctxT(t)
	content := []byte(strings.Repeat("the same bytes ", 1000))
	a, err := alice.UploadBytesWithName(ctx, content, "text/plain", "a.txt")
	if err != nil {
		t.Fatal(err)
	}
	b, err := bob.UploadBytesWithName(ctx, content, "application/octet-stream", "b.bin")
	if err != nil {
		t.Fatal(err)
	}
	if a.ContentURI == b.ContentURI {
		t.Fatal("two uploads got the same mxc:// URI")
	}
	files := contentFiles(t, s)
	if len(files) != 1 || !files[sha(content)] {
		t.Fatalf("content files = %v, want exactly one named %s", files, sha(content))
	}
	// Each URI keeps its own metadata.
	ra := get(t, s, "GET", mediaPath(authedMedia, "download", a.ContentURI), alice.AccessToken).want(t, 200, "")
	rb := get(t, s, "GET", mediaPath(authedMedia, "download", b.ContentURI), alice.AccessToken).want(t, 200, "")
	if !bytes.Equal(ra.Raw, content) || !bytes.Equal(rb.Raw, content) ||
		ra.Header.Get("Content-Disposition") != "inline; filename=a.txt" || rb.Header.Get("Content-Disposition") != "attachment; filename=b.bin" {
		t.Fatalf("downloads: %v / %v", ra.Header, rb.Header)
	}
	if len(tempFiles(t, s)) != 0 {
		t.Fatalf("temporary files left: %v", tempFiles(t, s))
	}
}

func TestMediaAuthenticatedEndpointsNeedToken(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	up, err := alice.UploadBytes(ctxT(t), encodePNG(t, 20, 20), "image/png")
	if err != nil {
		t.Fatal(err)
	}
	uri := up.ContentURI
	authed := []string{
		mediaPath(authedMedia, "download", uri),
		mediaPath(authedMedia, "download", uri, "x.png"),
		mediaPath(authedMedia, "thumbnail", uri) + "?width=10&height=10",
		authedMedia + "/config",
		legacyMedia + "/config",
	}
	for _, p := range authed {
		get(t, s, "GET", p, "").want(t, http.StatusUnauthorized, "M_MISSING_TOKEN")
		get(t, s, "GET", p, "not-a-token").want(t, http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
		get(t, s, "GET", p, alice.AccessToken).want(t, 200, "")
	}
	upload(t, s, "", "", "text/plain", strings.NewReader("x"), 1).want(t, http.StatusUnauthorized, "M_MISSING_TOKEN")
	do(t, "POST", s.URL()+"/_matrix/media/v1/create", "", nil).want(t, http.StatusUnauthorized, "M_MISSING_TOKEN")
	// The deprecated download and thumbnail paths need none.
	for _, p := range []string{
		mediaPath(legacyMedia, "download", uri), mediaPath(legacyMedia, "download", uri, "x.png"),
		mediaPath(legacyMedia, "thumbnail", uri) + "?width=10&height=10", mediaPath("/_matrix/media/r0", "download", uri),
	} {
		get(t, s, "GET", p, "").want(t, 200, "")
	}
}

func TestMediaCORSPreflight(t *testing.T) {
	s := start(t, nil)
	for _, p := range []string{
		authedMedia + "/download/hs.test/abcdef", authedMedia + "/thumbnail/hs.test/abcdef?width=1&height=1",
		"/_matrix/media/v3/upload", "/_matrix/media/v1/create", authedMedia + "/config",
	} {
		req, _ := http.NewRequestWithContext(ctxT(t), "OPTIONS", s.URL()+p, nil)
		req.Header.Set("Origin", "https://app.element.io")
		req.Header.Set("Access-Control-Request-Method", "GET")
		req.Header.Set("Access-Control-Request-Headers", "authorization")
		r := send(t, req)
		if r.Status != 200 {
			t.Fatalf("OPTIONS %s = %d %s", p, r.Status, r.Raw)
		}
		h := r.Header
		if h.Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") ||
			!strings.Contains(h.Get("Access-Control-Allow-Methods"), "GET") {
			t.Fatalf("OPTIONS %s CORS headers: %v", p, h)
		}
	}
	// Errors carry CORS too.
	r := get(t, s, "GET", authedMedia+"/download/hs.test/abcdef", "")
	if r.Status != 401 || r.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("401 without CORS: %v", r.Header)
	}
}

// TestMediaRemoteAndUnknown: unknown and malformed media is 404, and so is
// other servers' media on a server without federation (with federation it
// is fetched: tests/fedmedia).
func TestMediaRemoteAndUnknown(t *testing.T) {
	s := start(t, map[string]string{"MATRIX_FEDERATION": "disabled"})
	alice := newUser(t, s, "alice")
	for _, p := range []string{
		"/download/other.example/abcdef", "/download/other.example/abcdef/f.png", "/thumbnail/other.example/abcdef?width=32&height=32",
		"/download/hs.test/doesnotexist", "/download/hs.test/bad.id", "/download/hs.test/..%2F..%2Fetc", "/download/not a server/x",
	} {
		get(t, s, "GET", authedMedia+p, alice.AccessToken).want(t, http.StatusNotFound, "M_NOT_FOUND")
		get(t, s, "GET", legacyMedia+p, "").want(t, http.StatusNotFound, "M_NOT_FOUND")
	}
	_, err := alice.DownloadBytes(ctxT(t), id.ContentURI{Homeserver: "matrix.org", FileID: "abcdefgh"})
	wantMatrixErr(t, err, http.StatusNotFound, "M_NOT_FOUND")
}

func TestUploadTooLarge(t *testing.T) {
	s := startWithConfig(t, "media: {max_upload_bytes: 1048576}\n")
	alice := newUser(t, s, "alice")
	big := bytes.Repeat([]byte{'x'}, 1<<20+1)
	// Declared too large: refused before reading.
	upload(t, s, alice.AccessToken, "", "application/octet-stream", bytes.NewReader(big), int64(len(big))).
		want(t, http.StatusRequestEntityTooLarge, "M_TOO_LARGE")
	// Chunked (no length): refused while streaming.
	upload(t, s, alice.AccessToken, "", "application/octet-stream", io.MultiReader(bytes.NewReader(big)), -1).
		want(t, http.StatusRequestEntityTooLarge, "M_TOO_LARGE")
	if len(contentFiles(t, s)) != 0 || len(tempFiles(t, s)) != 0 {
		t.Fatalf("files left behind: %v %v", contentFiles(t, s), tempFiles(t, s))
	}
	// Exactly the limit is fine, and the limit is advertised.
	upload(t, s, alice.AccessToken, "", "application/octet-stream", io.MultiReader(bytes.NewReader(big[:1<<20])), -1).want(t, 200, "")
	if cfg, err := alice.GetMediaConfig(ctxT(t)); err != nil || cfg.UploadSize != 1<<20 {
		t.Fatalf("media config = %+v, %v", cfg, err)
	}
	_, err := alice.UploadBytes(ctxT(t), big, "application/octet-stream")
	wantMatrixErr(t, err, http.StatusRequestEntityTooLarge, "M_TOO_LARGE")
}

func TestUploadQuota(t *testing.T) {
	s := startWithConfig(t, "media: {quota_bytes_per_user: 3000}\n")
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	ctx := ctxT(t)
	if _, err := alice.UploadBytes(ctx, bytes.Repeat([]byte{'a'}, 2000), "text/plain"); err != nil {
		t.Fatal(err)
	}
	_, err := alice.UploadBytes(ctx, bytes.Repeat([]byte{'b'}, 2000), "text/plain")
	wantMatrixErr(t, err, http.StatusForbidden, "M_FORBIDDEN")
	// Streaming past the quota is caught too.
	upload(t, s, alice.AccessToken, "", "text/plain", io.MultiReader(strings.NewReader(strings.Repeat("c", 1500))), -1).
		want(t, http.StatusForbidden, "M_FORBIDDEN")
	if _, err := alice.UploadBytes(ctx, bytes.Repeat([]byte{'d'}, 1000), "text/plain"); err != nil {
		t.Fatalf("upload within the quota: %v", err)
	}
	if _, err := bob.UploadBytes(ctx, bytes.Repeat([]byte{'e'}, 2500), "text/plain"); err != nil {
		t.Fatalf("another user's quota is separate: %v", err)
	}
}

func TestUploadAsync(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	ctx := ctxT(t)
	created, err := alice.CreateMXC(ctx)
	if err != nil {
		t.Fatalf("CreateMXC: %v", err)
	}
	uri := created.ContentURI
	if uri.Homeserver != "hs.test" || uri.FileID == "" {
		t.Fatalf("created %s", uri)
	}
	if exp := created.UnusedExpiresAt.Time; exp.Before(time.Now().Add(23*time.Hour)) || exp.After(time.Now().Add(25*time.Hour)) {
		t.Fatalf("unused_expires_at = %v, want about 24h ahead", exp)
	}
	// Not uploaded yet: a short wait ends in 504.
	start := time.Now()
	get(t, s, "GET", mediaPath(authedMedia, "download", uri)+"?timeout_ms=300", alice.AccessToken).want(t, http.StatusGatewayTimeout, "M_NOT_YET_UPLOADED")
	get(t, s, "GET", mediaPath(legacyMedia, "thumbnail", uri)+"?width=8&height=8&timeout_ms=100", "").want(t, http.StatusGatewayTimeout, "M_NOT_YET_UPLOADED")
	if d := time.Since(start); d < 400*time.Millisecond || d > 5*time.Second {
		t.Fatalf("timeouts took %v", d)
	}
	// A download waiting with timeout_ms gets the content as soon as it lands.
	content := []byte("uploaded later")
	waited := make(chan *resp, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", s.URL()+mediaPath(legacyMedia, "download", uri)+"?timeout_ms=15000", nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			waited <- &resp{Status: -1}
			return
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		waited <- &resp{Status: res.StatusCode, Raw: raw, Header: res.Header}
	}()
	time.Sleep(200 * time.Millisecond)
	// Only the creator may upload.
	_, err = bob.UploadMedia(ctx, mautrix.ReqUploadMedia{ContentBytes: content, ContentType: "text/plain", MXC: uri})
	wantMatrixErr(t, err, http.StatusForbidden, "M_FORBIDDEN")
	if _, err := alice.UploadMedia(ctx, mautrix.ReqUploadMedia{ContentBytes: content, ContentType: "text/plain", FileName: "later.txt", MXC: uri}); err != nil {
		t.Fatalf("PUT upload: %v", err)
	}
	select {
	case r := <-waited:
		if r.Status != 200 || !bytes.Equal(r.Raw, content) || r.Header.Get("Content-Disposition") != "inline; filename=later.txt" {
			t.Fatalf("waiting download = %d %q %v", r.Status, r.Raw, r.Header)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waiting download not woken by the upload")
	}
	// Once only.
	_, err = alice.UploadMedia(ctx, mautrix.ReqUploadMedia{ContentBytes: []byte("again"), ContentType: "text/plain", MXC: uri})
	wantMatrixErr(t, err, http.StatusConflict, "M_CANNOT_OVERWRITE_MEDIA")
	if got, _ := alice.DownloadBytes(ctx, uri); !bytes.Equal(got, content) {
		t.Fatalf("content after refused overwrite = %q", got)
	}
	// Unknown IDs and other servers.
	for _, p := range []string{"/_matrix/media/v3/upload/hs.test/unknownid", "/_matrix/media/v3/upload/other.example/" + uri.FileID} {
		do(t, "PUT", s.URL()+p, alice.AccessToken, "x").want(t, http.StatusNotFound, "M_NOT_FOUND")
	}
	// The spec's PUT answer is {}.
	c2, _ := alice.CreateMXC(ctx)
	r := do(t, "PUT", s.URL()+"/_matrix/media/v3/upload/hs.test/"+c2.ContentURI.FileID+"?filename=a.txt", alice.AccessToken, "body")
	r.want(t, 200, "")
	if string(bytes.TrimSpace(r.Raw)) != "{}" {
		t.Fatalf("PUT answer = %s", r.Raw)
	}
	// A pending upload is bounded in the wait (timeout_ms is capped, bad values refused).
	c3, _ := alice.CreateMXC(ctx)
	get(t, s, "GET", mediaPath(authedMedia, "download", c3.ContentURI)+"?timeout_ms=abc", alice.AccessToken).want(t, 400, "M_INVALID_PARAM")
}

// thumb fetches a thumbnail and decodes its size.
func thumb(t *testing.T, s *testserver.Server, prefix string, uri id.ContentURI, token string, w, h int, method string) (int, int, *resp) {
	t.Helper()
	q := fmt.Sprintf("?width=%d&height=%d", w, h)
	if method != "" {
		q += "&method=" + method
	}
	r := get(t, s, "GET", mediaPath(prefix, "thumbnail", uri)+q, token).want(t, 200, "")
	cfg, _, err := image.DecodeConfig(bytes.NewReader(r.Raw))
	if err != nil {
		t.Fatalf("thumbnail %dx%d %s is not an image: %v (%s)", w, h, method, err, r.Header.Get("Content-Type"))
	}
	if !strings.HasPrefix(r.Header.Get("Content-Disposition"), "inline; filename=thumbnail.") || r.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("thumbnail headers: %v", r.Header)
	}
	return cfg.Width, cfg.Height, r
}

func TestThumbnailsAllFormats(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	ctx := ctxT(t)
	type img struct {
		name, ct string
		data     []byte
		w, h     int
		thumbCT  string
	}
	imgs := []img{
		{"jpeg", "image/jpeg", encodeJPEG(t, 400, 300), 400, 300, "image/jpeg"},
		{"png", "image/png", encodePNG(t, 400, 300), 400, 300, "image/png"},
		{"gif", "image/gif", encodeGIF(t, 400, 300), 400, 300, "image/png"},
		{"webp", "image/webp", mediaWebP, 120, 90, "image/png"},
	}
	for _, im := range imgs {
		up, err := alice.UploadBytes(ctx, im.data, im.ct)
		if err != nil {
			t.Fatalf("%s upload: %v", im.name, err)
		}
		uri := up.ContentURI
		cases := []struct {
			w, h         int
			method       string
			wantW, wantH int
		}{
			{32, 32, "crop", 32, 32},
			{96, 96, "crop", 96, 96},
			{96, 96, "scale", 96, 72},
			{64, 64, "", 64, 48}, // scale is the default
			{100, 50, "crop", 100, 50},
			{80, 60, "scale", 80, 60},
		}
		for _, c := range cases {
			for _, prefix := range []string{authedMedia, legacyMedia} {
				token := alice.AccessToken
				if prefix == legacyMedia {
					token = ""
				}
				w, h, r := thumb(t, s, prefix, uri, token, c.w, c.h, c.method)
				if im.h < c.h && c.method == "crop" {
					// The 90-pixel-high WebP cannot fill 96x96 without
					// upscaling: the square is cut at full resolution.
					c.wantW, c.wantH = im.h, im.h
				}
				if w != c.wantW || h != c.wantH {
					t.Fatalf("%s %dx%d %s = %dx%d, want %dx%d", im.name, c.w, c.h, c.method, w, h, c.wantW, c.wantH)
				}
				if r.Header.Get("Content-Type") != im.thumbCT {
					t.Fatalf("%s thumbnail type %s, want %s", im.name, r.Header.Get("Content-Type"), im.thumbCT)
				}
			}
		}
		// Never upscaled: asking for more than the image is the image.
		w, h, r := thumb(t, s, authedMedia, uri, alice.AccessToken, 1000, 1000, "scale")
		if w != im.w || h != im.h {
			t.Fatalf("%s upscaled to %dx%d", im.name, w, h)
		}
		if im.name == "png" && !bytes.Equal(r.Raw, im.data) {
			t.Fatal("a thumbnail larger than a PNG must be the original content")
		}
		// A crop that cannot be filled keeps its aspect ratio at full
		// resolution (an image smaller than the box both ways is itself).
		w, h, _ = thumb(t, s, authedMedia, uri, alice.AccessToken, 1000, 100, "crop")
		if wantH := im.w / 10; im.h <= 100 && (w != im.w || h != im.h) || im.h > 100 && (w != im.w || h != wantH) {
			t.Fatalf("%s crop 1000x100 of %dx%d = %dx%d", im.name, im.w, im.h, w, h)
		}
		// mautrix's thumbnail call (authenticated).
		res, err := alice.DownloadThumbnail(ctx, uri, 32, 32, mautrix.DownloadThumbnailExtra{Method: "crop"})
		if err != nil {
			t.Fatalf("DownloadThumbnail: %v", err)
		}
		cfg, _, err := image.DecodeConfig(res.Body)
		res.Body.Close()
		if err != nil || cfg.Width != 32 || cfg.Height != 32 {
			t.Fatalf("mautrix thumbnail = %+v, %v", cfg, err)
		}
	}

	// Pre-generated at upload and cached on demand, content-addressed.
	up, _ := alice.UploadBytes(ctx, encodePNG(t, 1000, 800), "image/png")
	s.Media.Wait()
	thumbs, err := s.DB.MediaThumbnails(ctx, "hs.test", up.ContentURI.FileID)
	if err != nil || len(thumbs) != 5 {
		t.Fatalf("pre-generated thumbnails = %d (%v), want the 5 standard sizes", len(thumbs), err)
	}
	thumb(t, s, authedMedia, up.ContentURI, alice.AccessToken, 123, 77, "crop")
	thumbs, _ = s.DB.MediaThumbnails(ctx, "hs.test", up.ContentURI.FileID)
	if len(thumbs) != 6 {
		t.Fatalf("on-demand thumbnail not cached: %d rows", len(thumbs))
	}
	files := contentFiles(t, s)
	for _, th := range thumbs {
		if !files[th.SHA256] {
			t.Fatalf("thumbnail %dx%d %s has no file %s", th.Width, th.Height, th.Method, th.SHA256)
		}
	}
	before := len(files)
	alice.UploadBytes(ctx, encodePNG(t, 1000, 800), "image/png")
	s.Media.Wait()
	if after := len(contentFiles(t, s)); after != before {
		t.Fatalf("an identical image added %d files (thumbnails too must be shared)", after-before)
	}
}

func TestThumbnailBrokenAndHostileImages(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	ctx := ctxT(t)
	full := encodePNG(t, 300, 200)
	truncated, err := alice.UploadBytes(ctx, full[:len(full)/2], "image/png")
	if err != nil {
		t.Fatal(err)
	}
	lying, _ := alice.UploadBytes(ctx, encodePNG(t, 10, 10), "image/jpeg") // a PNG that says JPEG still works
	text, _ := alice.UploadBytes(ctx, []byte("not an image"), "image/png")
	plain, _ := alice.UploadBytes(ctx, []byte("hello"), "text/plain")

	// A PNG header claiming 100000 x 100000 pixels.
	bomb := encodePNG(t, 1, 1)
	be := func(b []byte, v uint32) { b[0], b[1], b[2], b[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v) }
	be(bomb[16:20], 100000)
	be(bomb[20:24], 100000)
	be(bomb[29:33], crc32.ChecksumIEEE(bomb[12:29]))
	bombURI, _ := alice.UploadBytes(ctx, bomb, "image/png")
	s.Media.Wait()

	for i := 0; i < 2; i++ { // the second time from the recorded state
		get(t, s, "GET", mediaPath(authedMedia, "thumbnail", truncated.ContentURI)+"?width=32&height=32", alice.AccessToken).want(t, 400, "M_UNKNOWN")
		get(t, s, "GET", mediaPath(authedMedia, "thumbnail", text.ContentURI)+"?width=32&height=32", alice.AccessToken).want(t, 400, "M_UNKNOWN")
		get(t, s, "GET", mediaPath(authedMedia, "thumbnail", plain.ContentURI)+"?width=32&height=32", alice.AccessToken).want(t, 400, "M_UNKNOWN")
		get(t, s, "GET", mediaPath(authedMedia, "thumbnail", bombURI.ContentURI)+"?width=32&height=32", alice.AccessToken).want(t, 400, "M_UNKNOWN")
	}
	thumb(t, s, authedMedia, lying.ContentURI, alice.AccessToken, 5, 5, "crop")
	// Bad parameters.
	for _, q := range []string{"?width=0&height=10", "?width=-1&height=10", "?width=a&height=10", "?width=10&height=10&method=stretch", "?height=10"} {
		r := get(t, s, "GET", mediaPath(authedMedia, "thumbnail", lying.ContentURI)+q, alice.AccessToken)
		if r.Status != 400 {
			t.Fatalf("thumbnail%s = %d %s", q, r.Status, r.Raw)
		}
	}
	// The originals still download and the server is alive.
	if got, err := alice.DownloadBytes(ctx, truncated.ContentURI); err != nil || !bytes.Equal(got, full[:len(full)/2]) {
		t.Fatalf("download of the broken image: %v", err)
	}
	wantTokenValid(t, s, alice.AccessToken, alice.UserID.String(), "")
	if thumbs, _ := s.DB.MediaThumbnails(ctx, "hs.test", bombURI.ContentURI.FileID); len(thumbs) != 0 {
		t.Fatalf("thumbnails made for a bomb: %v", thumbs)
	}
}

func TestPreviewRefusesLoopbackAndPrivate(t *testing.T) {
	s := startWithConfig(t, "media: {url_preview_enabled: true}\n")
	alice := newUser(t, s, "alice")
	// A loopback listener that counts connections: refused previews open none.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var hits atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			hits.Add(1)
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	for _, target := range []string{
		"http://127.0.0.1:" + port + "/", "http://localhost:" + port + "/", "http://[::1]:" + port + "/",
		"http://10.0.0.1/", "http://172.16.5.4/", "http://192.168.1.1/", "http://169.254.169.254/latest/meta-data/",
		"http://100.64.0.1/", "http://[fd12::1]/", "http://[fe80::1]/", "http://0.0.0.0:" + port + "/",
		"http://[::ffff:127.0.0.1]:" + port + "/", "http://[::127.0.0.1]:" + port + "/", "http://[64:ff9b::7f00:1]:" + port + "/",
		s.URL() + "/_matrix/client/versions",
	} {
		q := "?url=" + strings.ReplaceAll(target, "&", "%26")
		get(t, s, "GET", authedMedia+"/preview_url"+q, alice.AccessToken).want(t, http.StatusForbidden, "M_FORBIDDEN")
		get(t, s, "GET", legacyMedia+"/preview_url"+q, alice.AccessToken).want(t, http.StatusForbidden, "M_FORBIDDEN")
	}
	_, err = alice.GetURLPreview(ctxT(t), "http://127.0.0.1:"+port+"/")
	wantMatrixErr(t, err, http.StatusForbidden, "M_FORBIDDEN")
	if n := hits.Load(); n != 0 {
		t.Fatalf("refused previews opened %d connections", n)
	}
	get(t, s, "GET", authedMedia+"/preview_url?url=http://127.0.0.1/", "").want(t, http.StatusUnauthorized, "M_MISSING_TOKEN")
	for _, bad := range []string{"", "?url=", "?url=file:///etc/passwd", "?url=not%20a%20url"} {
		r := get(t, s, "GET", authedMedia+"/preview_url"+bad, alice.AccessToken)
		if r.Status != 400 {
			t.Fatalf("preview_url%s = %d %s", bad, r.Status, r.Raw)
		}
	}
}

// TestPreviewWhitelistOpensARange: url_preview_ip_range_whitelist (Synapse's
// key) lets an admin preview pages on an internal range, and only there.
func TestPreviewWhitelistOpensARange(t *testing.T) {
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, `<html><head><meta property="og:title" content="Internal wiki"></head></html>`)
	}))
	t.Cleanup(page.Close)
	_, port, _ := net.SplitHostPort(page.Listener.Addr().String())
	s := startWithConfig(t, "media:\n  url_preview_enabled: true\n  url_preview_ip_range_whitelist: [\"127.0.0.1/32\"]\n")
	alice := newUser(t, s, "alice")
	og, err := alice.GetURLPreview(ctxT(t), page.URL+"/wiki")
	if err != nil || og.Title != "Internal wiki" {
		t.Fatalf("whitelisted preview = %+v, %v", og, err)
	}
	// Loopback outside the whitelisted range stays refused.
	get(t, s, "GET", authedMedia+"/preview_url?url=http://[::1]:"+port+"/", alice.AccessToken).want(t, http.StatusForbidden, "M_FORBIDDEN")
	get(t, s, "GET", authedMedia+"/preview_url?url=http://127.0.0.2:"+port+"/", alice.AccessToken).want(t, http.StatusForbidden, "M_FORBIDDEN")
	// An unparsable range stops the server with a message naming the key.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "homeserver.yaml"), []byte("media: {url_preview_ip_range_whitelist: [\"10.0.0.0/33\"]}\n"), 0o600)
	if _, _, err := config.Load(func(k string) string {
		return map[string]string{config.EnvDataDir: dir}[k]
	}); err == nil || !strings.Contains(err.Error(), "url_preview_ip_range_whitelist") {
		t.Fatalf("bad whitelist: err = %v", err)
	}
}

func TestPreviewDisabledAnswersUnrecognized(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	_, err := alice.GetURLPreview(ctxT(t), "https://example.org/")
	wantMatrixErr(t, err, http.StatusNotFound, "M_UNRECOGNIZED")
	get(t, s, "GET", legacyMedia+"/preview_url?url=https://example.org/", alice.AccessToken).want(t, http.StatusNotFound, "M_UNRECOGNIZED")
}

// TestMediaUploadMemory streams 20 MB through a real server and checks that
// the heap does not grow by anything near the upload's size.
func TestMediaUploadMemory(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	const size = 20 << 20
	stats := measureUpload(t, s, alice.AccessToken, size)
	t.Logf("20 MB upload: heap in use before %.1f MB, after %.1f MB, peak %.1f MB; %.1f MB allocated in total",
		mb(stats.before), mb(stats.after), mb(stats.peak), mb(stats.allocated))
	if stats.peak > stats.before+8<<20 || stats.allocated > 8<<20 {
		t.Fatalf("a 20 MB upload grew the heap by %.1f MB (allocated %.1f MB): it is being buffered",
			mb(stats.peak-stats.before), mb(stats.allocated))
	}
}

type memStats struct{ before, after, peak, allocated uint64 }

func mb(n uint64) float64 { return float64(n) / (1 << 20) }

// patternReader yields n bytes without holding them.
type patternReader struct{ left, i int64 }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	n := int64(len(b))
	if n > p.left {
		n = p.left
	}
	for j := int64(0); j < n; j++ {
		b[j] = byte((p.i + j) * 7)
	}
	p.i += n
	p.left -= n
	return int(n), nil
}

func measureUpload(t testing.TB, s *testserver.Server, token string, size int64) memStats {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st := memStats{before: ms.HeapInuse, peak: ms.HeapInuse}
	startAlloc := ms.TotalAlloc
	done := make(chan struct{})
	sampled := make(chan uint64)
	go func() {
		peak := uint64(0)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				sampled <- peak
				return
			case <-tick.C:
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				peak = max(peak, m.HeapInuse)
			}
		}
	}()
	req, _ := http.NewRequestWithContext(context.Background(), "POST", s.URL()+"/_matrix/media/v3/upload", &patternReader{left: size})
	req.ContentLength = size
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/octet-stream")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("upload = %d", res.StatusCode)
	}
	close(done)
	st.peak = max(st.peak, <-sampled)
	runtime.ReadMemStats(&ms)
	st.after = ms.HeapInuse
	st.allocated = ms.TotalAlloc - startAlloc
	return st
}

// BenchmarkMediaUpload measures upload throughput and memory of 20 MB uploads.
func BenchmarkMediaUpload(b *testing.B) {
	s := testserver.Start(b, nil)
	tok := benchUser(b, s)
	const size = 20 << 20
	b.SetBytes(size)
	b.ResetTimer()
	var worst memStats
	for i := 0; i < b.N; i++ {
		st := measureUpload(b, s, tok, size)
		if st.peak-st.before > worst.peak-worst.before {
			worst = st
		}
		worst.allocated = max(worst.allocated, st.allocated)
	}
	b.ReportMetric(mb(worst.peak-worst.before), "MB-heap-growth")
	b.ReportMetric(mb(worst.allocated), "MB-allocated/upload")
	b.Logf("20 MB upload: heap in use before %.1f MB, peak %.1f MB, after %.1f MB", mb(worst.before), mb(worst.peak), mb(worst.after))
}

// BenchmarkMediaThumbnail measures on-demand thumbnailing of a 12 MP JPEG.
func BenchmarkMediaThumbnail(b *testing.B) {
	s := testserver.Start(b, nil)
	tok := benchUser(b, s)
	var buf bytes.Buffer
	jpeg.Encode(&buf, gradient(4000, 3000), &jpeg.Options{Quality: 85})
	data := buf.Bytes()
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req, _ := http.NewRequestWithContext(ctx, "POST", s.URL()+"/_matrix/media/v3/upload", bytes.NewReader(data))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "image/jpeg")
		res, err := http.DefaultClient.Do(req)
		if err != nil || res.StatusCode != 200 {
			b.Fatalf("upload: %v", err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		// The five standard sizes are made in the background; wait for them.
		s.Media.Wait()
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/image(5-thumbnails)")
}

func benchUser(b *testing.B, s *testserver.Server) string {
	b.Helper()
	login, err := s.Accounts.Register(context.Background(), accounts.Registration{Localpart: "bench", Password: testPassword})
	if err != nil {
		b.Fatal(err)
	}
	return login.AccessToken
}
