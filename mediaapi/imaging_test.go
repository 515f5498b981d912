package mediaapi

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"runtime"
	"testing"
)

func TestThumbnailExifOrientationParsing(t *testing.T) {
	jpg := makeJPEG(t, 8, 4)
	if o := jpegOrientation(bytes.NewReader(jpg)); o != 1 {
		t.Fatalf("no EXIF: orientation %d, want 1", o)
	}
	for o := uint16(1); o <= 8; o++ {
		for _, be := range []bool{false, true} {
			if got := jpegOrientation(bytes.NewReader(withOrientation(jpg, o, be))); got != int(o) {
				t.Fatalf("orientation %d (big endian %v) read as %d", o, be, got)
			}
		}
	}
	// An XMP APP1 segment before the EXIF one is skipped.
	xmp := []byte("http://ns.adobe.com/xap/1.0/\x00<x/>")
	withXMP := append([]byte{0xFF, 0xD8, 0xFF, 0xE1, 0, byte(len(xmp) + 2)}, xmp...)
	withXMP = append(withXMP, withOrientation(jpg, 6, false)[2:]...)
	if got := jpegOrientation(bytes.NewReader(withXMP)); got != 6 {
		t.Fatalf("EXIF after XMP read as %d, want 6", got)
	}
	// Malformed data never panics and means "no rotation".
	bad := withOrientation(jpg, 6, false)
	for cut := 0; cut < 60; cut++ {
		jpegOrientation(bytes.NewReader(bad[:cut]))
	}
	broken := append([]byte{}, bad...)
	broken[10+4] = 0xFF // TIFF magic
	if got := jpegOrientation(bytes.NewReader(broken)); got != 1 {
		t.Fatalf("broken TIFF header read as %d", got)
	}
	if got := exifOrientation([]byte{'I', 'I', 42, 0, 0xFF, 0xFF, 0xFF, 0x7F}); got != 0 {
		t.Fatalf("out-of-range IFD offset read as %d", got)
	}
}

func TestThumbnailPlan(t *testing.T) {
	cases := []struct {
		srcW, srcH, w, h int
		method           string
		outW, outH       int
		crop             image.Rectangle
		original         bool
	}{
		// scale fits within the box keeping the aspect ratio
		{1000, 500, 320, 240, "scale", 320, 160, image.Rect(0, 0, 1000, 500), false},
		{500, 1000, 320, 240, "scale", 120, 240, image.Rect(0, 0, 500, 1000), false},
		// never upscale: a small image is the thumbnail
		{100, 50, 320, 240, "scale", 100, 50, image.Rect(0, 0, 100, 50), true},
		{100, 50, 320, 240, "crop", 100, 50, image.Rect(0, 0, 100, 50), true},
		// crop fills the box exactly, cutting the centre
		{1000, 500, 96, 96, "crop", 96, 96, image.Rect(250, 0, 750, 500), false},
		{500, 1000, 320, 240, "crop", 320, 240, image.Rect(0, 312, 500, 687), false},
		// crop where one side is already smaller: aspect ratio kept, no scaling
		{200, 50, 96, 96, "crop", 50, 50, image.Rect(75, 0, 125, 50), false},
		{50, 200, 96, 96, "crop", 50, 50, image.Rect(0, 75, 50, 125), false},
	}
	for _, c := range cases {
		p := makePlan(c.srcW, c.srcH, c.w, c.h, c.method)
		if p.w != c.outW || p.h != c.outH || p.crop != c.crop || p.original != c.original {
			t.Errorf("%dx%d -> %dx%d %s: got %dx%d crop %v original %v; want %dx%d crop %v original %v",
				c.srcW, c.srcH, c.w, c.h, c.method, p.w, p.h, p.crop, p.original, c.outW, c.outH, c.crop, c.original)
		}
	}
}

func TestThumbnailDecodeFormats(t *testing.T) {
	for name, data := range map[string][]byte{
		"jpeg": makeJPEG(t, 60, 40), "png": makePNG(t, 60, 40), "gif": makeGIF(t, 60, 40), "webp": testWebP,
	} {
		src, err := decodeSource(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if src.format != name {
			t.Fatalf("%s decoded as %s", name, src.format)
		}
		img := render(src, makePlan(src.w, src.h, 32, 32, "crop"))
		if img.Bounds().Dx() != 32 || img.Bounds().Dy() != 32 {
			t.Fatalf("%s crop = %v", name, img.Bounds())
		}
	}
	// GIF: the first frame (red), not the second (white).
	src, _ := decodeSource(bytes.NewReader(makeGIF(t, 60, 40)))
	if r, g, _, _ := src.img.At(30, 20).RGBA(); r>>8 != 255 || g != 0 {
		t.Fatalf("GIF first frame pixel = %v", src.img.At(30, 20))
	}
}

func TestThumbnailGIFPartialFrame(t *testing.T) {
	pal := color.Palette{color.Transparent, color.RGBA{0, 0, 255, 255}}
	frame := image.NewPaletted(image.Rect(10, 10, 20, 20), pal)
	for i := range frame.Pix {
		frame.Pix[i] = 1
	}
	var buf bytes.Buffer
	g := &gif.GIF{Image: []*image.Paletted{frame}, Delay: []int{0}, Config: image.Config{Width: 40, Height: 30, ColorModel: pal}}
	if err := gif.EncodeAll(&buf, g); err != nil {
		t.Fatal(err)
	}
	src, err := decodeSource(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if src.w != 40 || src.h != 30 || src.img.Bounds() != image.Rect(0, 0, 40, 30) {
		t.Fatalf("partial frame not placed on the logical screen: %dx%d %v", src.w, src.h, src.img.Bounds())
	}
	if _, _, b, a := src.img.At(15, 15).RGBA(); b>>8 != 255 || a>>8 != 255 {
		t.Fatalf("frame pixel = %v", src.img.At(15, 15))
	}
}

func TestThumbnailOrientationApplied(t *testing.T) {
	// A 40x20 landscape JPEG with a red top-left pixel, tagged "rotate 90
	// clockwise" (6): the displayed image is 20x40 with red at the top right.
	corner := pattern(40, 20)
	for y := 0; y < 8; y++ {
		for x := 0; x < 8; x++ {
			corner.Set(x, y, color.RGBA{255, 0, 0, 255})
		}
	}
	var jbuf bytes.Buffer
	if err := jpeg.Encode(&jbuf, corner, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	jpg := withOrientation(jbuf.Bytes(), 6, false)
	src, err := decodeSource(bytes.NewReader(jpg))
	if err != nil {
		t.Fatal(err)
	}
	if src.orient != 6 || src.w != 20 || src.h != 40 {
		t.Fatalf("oriented size %dx%d (orientation %d), want 20x40 (6)", src.w, src.h, src.orient)
	}
	img := render(src, makePlan(src.w, src.h, 100, 100, "scale"))
	if img.Bounds().Dx() != 20 || img.Bounds().Dy() != 40 {
		t.Fatalf("rendered %v, want 20x40", img.Bounds())
	}
	if r, g, _, _ := img.At(19, 0).RGBA(); r>>8 < 200 || g>>8 > 80 {
		t.Fatalf("top-right pixel = %v, want red", img.At(19, 0))
	}
	// Every orientation maps the stored top-left pixel where EXIF says.
	want := map[int]image.Point{1: {0, 0}, 2: {39, 0}, 3: {39, 19}, 4: {0, 19}, 5: {0, 0}, 6: {19, 0}, 7: {19, 39}, 8: {0, 39}}
	for o, pt := range want {
		rgba := pattern(40, 20)
		out := orient(rgba, o)
		if r, g, _, _ := out.At(pt.X, pt.Y).RGBA(); r>>8 != 255 || g != 0 {
			t.Errorf("orientation %d: red pixel not at %v (%v)", o, pt, out.At(pt.X, pt.Y))
		}
		// The crop mapping sends the whole displayed image to the whole stored one.
		w, h := 40, 20
		if o >= 5 {
			w, h = 20, 40
		}
		if r := toStored(image.Rect(0, 0, w, h), o, 40, 20); r != image.Rect(0, 0, 40, 20) {
			t.Errorf("orientation %d: full rect maps to %v", o, r)
		}
	}
}

func TestThumbnailRefusesBombsAndBrokenImages(t *testing.T) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := decodeSource(bytes.NewReader(bombPNG(t, 100000, 100000)))
	runtime.ReadMemStats(&after)
	if !errors.Is(err, errImageTooLarge) {
		t.Fatalf("100000x100000 PNG: err = %v, want errImageTooLarge", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Fatalf("refusing the bomb allocated %d bytes", grew)
	}
	// Just over the limit is refused, a valid header with truncated data fails cleanly.
	if _, err := decodeSource(bytes.NewReader(bombPNG(t, 8000, 4001))); !errors.Is(err, errImageTooLarge) {
		t.Fatalf("8000x4001: err = %v", err)
	}
	for name, data := range map[string][]byte{
		"jpeg": makeJPEG(t, 200, 100), "png": makePNG(t, 200, 100), "gif": makeGIF(t, 200, 100), "webp": testWebP,
	} {
		cuts := []int{30, len(data) / 4, len(data) - 3}
		if name == "gif" {
			cuts = cuts[:2] // past the first frame a GIF is still a valid still image
		}
		for _, cut := range cuts {
			if _, err := decodeSource(bytes.NewReader(data[:cut])); !errors.Is(err, errCannotThumbnail) {
				t.Errorf("%s truncated to %d: err = %v", name, cut, err)
			}
		}
	}
	// A header that lies about its size.
	lying := bombPNG(t, 300, 300)
	if _, err := decodeSource(bytes.NewReader(lying)); !errors.Is(err, errCannotThumbnail) {
		t.Fatalf("lying PNG: err = %v", err)
	}
	if _, err := decodeSource(bytes.NewReader([]byte("<svg xmlns='http://www.w3.org/2000/svg'/>"))); !errors.Is(err, errCannotThumbnail) {
		t.Fatalf("SVG: err = %v", err)
	}
}
