package mediaapi

// Fuzz targets for everything mediaapi parses from untrusted bytes: image
// headers and pixels, EXIF, and the HTML of URL previews (there is no
// multipart parsing here). Their seed corpora in testdata/fuzz run as plain
// tests with every `go test`; to search for new inputs, run one at a time:
//
//	go test ./mediaapi -run x -fuzz FuzzProbeAndDecode -fuzztime 10m
//	go test ./mediaapi -run x -fuzz FuzzJPEGFrame -fuzztime 10m
//	go test ./mediaapi -run x -fuzz FuzzJPEGOrientation -fuzztime 10m
//	go test ./mediaapi -run x -fuzz FuzzParseOpenGraph -fuzztime 10m
//
// Failing inputs are written to testdata/fuzz/<target>/: commit them with
// the fix, they become regression tests.

import (
	"bytes"
	"image/jpeg"
	"net/url"
	"strings"
	"testing"
)

// fuzzDecodeLimit keeps fuzzing fast: larger images are only probed.
const fuzzDecodeLimit = 1 << 20

// FuzzProbeAndDecode: probing never panics; an image it admits decodes to
// the size its header gave, within the memory probe estimated, and renders.
func FuzzProbeAndDecode(f *testing.F) {
	for _, data := range fixtureImages(f) {
		f.Add(data)
	}
	f.Add(makePNG(f, 40, 30))
	f.Add(makeJPEG(f, 40, 30))
	f.Add(makeGIF(f, 40, 30))
	f.Add(testWebP)
	f.Add(flatPNG(f, 64, 48, 16, 6, true))
	f.Add(withOrientation(makeJPEG(f, 40, 30), 6, false))
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := probe(bytes.NewReader(data))
		if err != nil {
			return
		}
		if in.rawW <= 0 || in.rawH <= 0 || in.decodeBytes <= 0 || in.heldBytes <= 0 || in.orient < 1 || in.orient > 8 {
			t.Fatalf("probe accepted %+v", in)
		}
		if in.decodeBytes > fuzzDecodeLimit || in.heldBytes > fuzzDecodeLimit {
			return
		}
		var src *source
		got := allocated(func() { src, err = decodeProbed(bytes.NewReader(data), in) })
		if err != nil {
			return // broken pixel data is fine: no thumbnails
		}
		if b := src.img.Bounds(); b.Dx() != in.rawW || b.Dy() != in.rawH {
			t.Fatalf("decoded %v, header said %dx%d", b, in.rawW, in.rawH)
		}
		if limit := uint64(in.decodeBytes) + 1<<20; got > limit {
			t.Fatalf("%s %dx%d: decoding allocated %d bytes, estimated %d", in.format, in.rawW, in.rawH, got, in.decodeBytes)
		}
		plans := []plan{makePlan(src.w, src.h, 32, 32, "crop"), makePlan(src.w, src.h, 320, 240, "scale")}
		srcs, rplans := reduce(src, plans)
		for i := range plans {
			if img := render(srcs[i], rplans[i]); img.Bounds().Dx() != plans[i].w || img.Bounds().Dy() != plans[i].h {
				t.Fatalf("rendered %v for a %dx%d plan", img.Bounds(), plans[i].w, plans[i].h)
			}
		}
	})
}

// FuzzJPEGFrame: the frame header parser never panics, and when it and the
// standard decoder both read a header they agree on its size.
func FuzzJPEGFrame(f *testing.F) {
	for name, data := range fixtureImages(f) {
		if strings.HasPrefix(name, "jpeg") {
			f.Add(data)
		}
	}
	f.Add(makeJPEG(f, 17, 9))
	f.Add(withOrientation(makeJPEG(f, 8, 8), 3, true))
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := readJPEGFrame(bytes.NewReader(data))
		if err != nil {
			return
		}
		if len(fr.comps) < 1 || len(fr.comps) > 4 {
			t.Fatalf("%d components", len(fr.comps))
		}
		decode, held := fr.cost()
		if decode < 0 || held < 0 {
			t.Fatalf("negative cost %d %d", decode, held)
		}
		if cfg, err := jpeg.DecodeConfig(bytes.NewReader(data)); err == nil && (cfg.Width != fr.w || cfg.Height != fr.h) {
			t.Fatalf("frame %dx%d, image/jpeg says %dx%d", fr.w, fr.h, cfg.Width, cfg.Height)
		}
	})
}

// FuzzJPEGOrientation: EXIF parsing never panics and yields 1-8.
func FuzzJPEGOrientation(f *testing.F) {
	jpg := makeJPEG(f, 8, 4)
	for o := uint16(1); o <= 8; o++ {
		f.Add(withOrientation(jpg, o, o%2 == 0))
	}
	f.Add(jpg)
	f.Fuzz(func(t *testing.T, data []byte) {
		if o := jpegOrientation(bytes.NewReader(data)); o < 1 || o > 8 {
			t.Fatalf("orientation %d", o)
		}
		if o := exifOrientation(data); o < 0 || o > 8 {
			t.Fatalf("EXIF orientation %d", o)
		}
	})
}

// FuzzParseOpenGraph: the preview parser never panics, keeps its bounds
// (key count, value length) and only ever returns an absolute http(s)
// og:image.
func FuzzParseOpenGraph(f *testing.F) {
	f.Add([]byte(`<html><head><title>T</title><meta property="og:title" content="The Rock"><meta property="og:image" content="/a.png"><meta name="description" content="D"></head></html>`), "text/html; charset=utf-8")
	f.Add([]byte("<meta property='og:title' content='Caf\xe9'>"), "text/html; charset=iso-8859-1")
	f.Add([]byte(`<meta property="og:image" content="javascript:alert(1)"><meta property="og:image:width" content="-5">`), "text/html")
	f.Add([]byte(`<meta charset="shift_jis"><title>`+strings.Repeat("x", 5000)+`</title>`), "")
	base, _ := url.Parse("https://example.org/dir/page.html")
	f.Fuzz(func(t *testing.T, html []byte, contentType string) {
		og := parseOpenGraph(bytes.NewReader(html), contentType, base)
		if len(og) > maxOGKeys+2 {
			t.Fatalf("%d keys", len(og))
		}
		for k, v := range og {
			switch v := v.(type) {
			case string:
				if len(v) > maxOGValueLen+len("…") && k != "og:image" {
					t.Fatalf("%s: value of %d bytes", k, len(v))
				}
			case int:
				if v <= 0 {
					t.Fatalf("%s = %d", k, v)
				}
			default:
				t.Fatalf("%s has type %T", k, v)
			}
		}
		if img, ok := og["og:image"].(string); ok {
			u, err := url.Parse(img)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				t.Fatalf("og:image %q", img)
			}
		}
	})
}
