package mediaapi

import (
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"matrixhs/internal/dbtest"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/sirupsen/logrus"

	"matrixhs/config"
	"matrixhs/internal/accounts"
	"matrixhs/internal/auth"
	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

// testWebP is a 120x90 lossless WebP of one colour (x/image has no
// encoder; the bytes were written by hand: VP8L with single-symbol prefix
// codes, so the pixels take no bits).
var testWebP = []byte{
	0x52, 0x49, 0x46, 0x46, 0x1a, 0x00, 0x00, 0x00, 0x57, 0x45, 0x42, 0x50, 0x56, 0x50, 0x38, 0x4c,
	0x0d, 0x00, 0x00, 0x00, 0x2f, 0x77, 0x40, 0x16, 0x00, 0x28, 0x59, 0x91, 0x2b, 0xd3, 0xff, 0x02,
	0x00, 0x00,
}

type testEnv struct {
	m     *Media
	db    *storage.DB
	acc   *accounts.Service
	cfg   *config.Config
	srv   *httptest.Server
	token string
	user  string
}

// newTestEnv starts the media API alone behind the shared middleware.
func newTestEnv(t testing.TB, mod func(*config.Config), opts Options) *testEnv {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Server.Name = "media.test"
	cfg.Server.DataDir = dir
	cfg.Media.Path = filepath.Join(dir, "media")
	cfg.Database.Path = filepath.Join(dir, "hs.db")
	cfg.Registration.BcryptCost = 4
	if mod != nil {
		mod(&cfg)
	}
	db, err := dbtest.Open(t, context.Background(), cfg.Database.Path)
	if err != nil {
		t.Fatal(err)
	}
	acc := accounts.New(db, accounts.Options{ServerName: cfg.Server.Name, BcryptCost: 4})
	log := logrus.New()
	log.SetOutput(io.Discard)
	if os.Getenv("TEST_SERVER_LOGS") != "" {
		log.SetOutput(os.Stderr)
	}
	m, err := New(&cfg, db, auth.New(acc), log, opts)
	if err != nil {
		t.Fatal(err)
	}
	rt := httputil.NewRouter()
	m.Register(rt)
	srv := httptest.NewServer(httputil.Outer(rt, log, cfg.Server.MaxRequestBodyBytes))
	e := &testEnv{m: m, db: db, acc: acc, cfg: &cfg, srv: srv}
	t.Cleanup(func() {
		srv.Close()
		m.Close()
		db.Close()
	})
	login, err := acc.Register(context.Background(), accounts.Registration{Localpart: "alice", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	e.token, e.user = login.AccessToken, login.UserID
	return e
}

// do sends a request to the test server.
func (e *testEnv) do(t testing.TB, method, path, token, contentType string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp, raw
}

// pattern draws a gradient with a red top-left pixel (for orientation checks).
func pattern(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(x * 255 / max(1, w-1)), uint8(y * 255 / max(1, h-1)), 128, 255})
		}
	}
	img.Set(0, 0, color.RGBA{255, 0, 0, 255})
	return img
}

func makePNG(t testing.TB, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, pattern(w, h)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func makeJPEG(t testing.TB, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, pattern(w, h), &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func makeGIF(t testing.TB, w, h int) []byte {
	t.Helper()
	pal := color.Palette{color.Black, color.White, color.RGBA{255, 0, 0, 255}}
	frame := func(c uint8) *image.Paletted {
		p := image.NewPaletted(image.Rect(0, 0, w, h), pal)
		for i := range p.Pix {
			p.Pix[i] = c
		}
		return p
	}
	var buf bytes.Buffer
	err := gif.EncodeAll(&buf, &gif.GIF{Image: []*image.Paletted{frame(2), frame(1)}, Delay: []int{10, 10}})
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// withOrientation inserts an EXIF APP1 segment with the orientation tag
// right after the JPEG's SOI marker.
func withOrientation(jpg []byte, o uint16, bigEndian bool) []byte {
	var tiff []byte
	if bigEndian {
		tiff = []byte{'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, byte(o >> 8), byte(o), 0, 0, 0, 0, 0, 0}
	} else {
		tiff = []byte{'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, byte(o), byte(o >> 8), 0, 0, 0, 0, 0, 0}
	}
	seg := append([]byte("Exif\x00\x00"), tiff...)
	n := len(seg) + 2
	out := append([]byte{}, jpg[:2]...)
	out = append(out, 0xFF, 0xE1, byte(n>>8), byte(n))
	out = append(out, seg...)
	return append(out, jpg[2:]...)
}

// bombPNG is a valid PNG header claiming w x h pixels, with a tiny body.
func bombPNG(t testing.TB, w, h uint32) []byte {
	t.Helper()
	small := makePNG(t, 1, 1)
	out := append([]byte{}, small...)
	// IHDR data starts at byte 16: width, height (big-endian); fix its CRC.
	be := func(b []byte, v uint32) { b[0], b[1], b[2], b[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v) }
	be(out[16:20], w)
	be(out[20:24], h)
	be(out[29:33], crc32.ChecksumIEEE(out[12:29]))
	return out
}

// decodeSource probes and decodes an image read from rs, refusing (before
// any pixel is decoded) images that need more than the default budget.
func decodeSource(rs io.ReadSeeker) (*source, error) {
	in, err := probe(rs)
	if err != nil {
		return nil, err
	}
	if in.decodeBytes > config.Default().Media.ThumbnailMemoryBytes {
		return nil, fmt.Errorf("%w: decoding needs %d MiB", errImageTooLarge, in.decodeBytes>>20)
	}
	return decodeProbed(rs, in)
}
