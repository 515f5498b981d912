package mediaapi

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"matrixhs/config"
	"matrixhs/storage"
)

// flatPNG writes a PNG of one colour with the given bit depth and colour
// type (0 gray, 2 RGB, 3 paletted, 4 gray+alpha, 6 RGBA), streaming its rows
// through zlib so that even a huge image costs the test no memory: a few
// hundred KB that decode to hundreds of MB.
func flatPNG(t testing.TB, w, h int, depth, colorType byte, interlaced bool) []byte {
	channels := map[byte]int{0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colorType]
	var out bytes.Buffer
	out.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(data)))
		out.Write(n[:])
		crc := crc32.NewIEEE()
		io.MultiWriter(&out, crc).Write([]byte(typ))
		io.MultiWriter(&out, crc).Write(data)
		binary.BigEndian.PutUint32(n[:], crc.Sum32())
		out.Write(n[:])
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], uint32(w))
	binary.BigEndian.PutUint32(ihdr[4:], uint32(h))
	ihdr[8], ihdr[9] = depth, colorType
	if interlaced {
		ihdr[12] = 1
	}
	chunk("IHDR", ihdr)
	if colorType == 3 {
		chunk("PLTE", []byte{200, 100, 50})
	}
	var z bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&z, zlib.BestSpeed)
	// Each row: filter "none", then zero samples; an interlaced image has
	// one set of rows per Adam7 pass.
	passes := [][4]int{{0, 0, 1, 1}}
	if interlaced {
		passes = [][4]int{{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4}, {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}}
	}
	for _, p := range passes {
		pw, ph := (w-p[0]+p[2]-1)/p[2], (h-p[1]+p[3]-1)/p[3]
		if pw <= 0 || ph <= 0 {
			continue
		}
		row := make([]byte, 1+(pw*channels*int(depth)+7)/8)
		for y := 0; y < ph; y++ {
			zw.Write(row)
		}
	}
	zw.Close()
	chunk("IDAT", z.Bytes())
	chunk("IEND", nil)
	return out.Bytes()
}

// allocated is how many bytes f allocates (garbage included, so it bounds
// the peak from above).
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestImageCostBoundsDecoding: for every pixel layout the decoders produce,
// what decoding really allocates stays within the estimate made from the
// header alone, and the estimate reflects bytes per pixel, not pixels.
func TestImageCostBoundsDecoding(t *testing.T) {
	const w, h = 1200, 900
	gray16 := image.NewGray16(image.Rect(0, 0, w, h))
	rgba64 := image.NewNRGBA64(image.Rect(0, 0, w, h))
	rgba64.Pix[7] = 1 // translucent: stored as RGBA, 16 bits
	cases := map[string][]byte{
		"png-gray8":     flatPNG(t, w, h, 8, 0, false),
		"png-gray1":     flatPNG(t, w, h, 1, 0, false),
		"png-gray16":    encodePNGImage(t, gray16),
		"png-rgb8":      flatPNG(t, w, h, 8, 2, false),
		"png-rgb16":     flatPNG(t, w, h, 16, 2, false),
		"png-rgba8":     flatPNG(t, w, h, 8, 6, false),
		"png-rgba16":    encodePNGImage(t, rgba64),
		"png-ga16":      flatPNG(t, w, h, 16, 4, false),
		"png-paletted":  flatPNG(t, w, h, 8, 3, false),
		"png-rgba16-il": flatPNG(t, w, h, 16, 6, true),
		"jpeg-420":      makeJPEG(t, w, h),
		"jpeg-gray":     encodeJPEGImage(t, image.NewGray(image.Rect(0, 0, w, h))),
		"gif":           makeGIF(t, w, h),
		"webp-lossless": testWebP,
	}
	for name, data := range fixtureImages(t) {
		cases[name] = data
	}
	for name, data := range cases {
		in, err := probe(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s: probe: %v", name, err)
		}
		var derr error
		got := allocated(func() { _, derr = decodeProbed(bytes.NewReader(data), in) })
		if derr != nil {
			t.Fatalf("%s: decode: %v", name, derr)
		}
		t.Logf("%-28s %4dx%-4d allocated %6.2f, estimated %6.2f bytes/pixel", name, in.rawW, in.rawH, float64(got)/float64(in.rawW*in.rawH), float64(in.decodeBytes)/float64(in.rawW*in.rawH))
		// Fixed costs (Huffman tables, zlib window, bufio) come on top.
		if slack := uint64(256 << 10); got > uint64(in.decodeBytes)+slack {
			t.Errorf("%s: decoding allocated %d bytes, estimate %d (%.2f bytes/pixel)", name, got, in.decodeBytes,
				float64(got)/float64(in.rawW*in.rawH))
		}
	}
	// The case that brought this on: 16-bit RGBA is 8 bytes a pixel.
	in16, _ := probe(bytes.NewReader(flatPNG(t, 5600, 5600, 16, 6, false)))
	in8, _ := probe(bytes.NewReader(flatPNG(t, 5600, 5600, 8, 0, false)))
	if in16.decodeBytes < 8*5600*5600 || in8.decodeBytes > 2*5600*5600 {
		t.Fatalf("5600x5600: 16-bit RGBA estimated %d, 8-bit gray %d", in16.decodeBytes, in8.decodeBytes)
	}
}

// fixtureImages are JPEG and WebP layouts Go cannot encode (progressive,
// 4:4:4, CMYK, lossy WebP with and without alpha), made with libjpeg-turbo,
// ImageMagick and libwebp and kept in testdata/images.
func fixtureImages(t testing.TB) map[string][]byte {
	out := map[string][]byte{}
	files, _ := filepath.Glob(filepath.Join("testdata", "images", "*"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = data
	}
	return out
}

func encodePNGImage(t testing.TB, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func encodeJPEGImage(t testing.TB, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 85}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// uploadPNG uploads data as image/png and returns the media ID.
func (e *testEnv) uploadImage(t testing.TB, data []byte) string {
	t.Helper()
	resp, raw := e.do(t, "POST", "/_matrix/media/v3/upload", e.token, "image/png", bytes.NewReader(data))
	if resp.StatusCode != 200 {
		t.Fatalf("upload = %d %s", resp.StatusCode, raw)
	}
	s := string(raw)
	i := strings.Index(s, "mxc://media.test/")
	j := strings.LastIndex(s, `"`)
	if i < 0 || j <= i {
		t.Fatalf("upload answer %s", raw)
	}
	return s[i+len("mxc://media.test/") : j]
}

// TestThumbnailHostileUploadsStayBounded: four concurrent uploads of a
// 244 KB PNG that decodes to 250 MB (5600x5600, 16-bit RGBA) are stored
// and answered 200, but decoding them is refused from the header: they get
// no thumbnails, thumbnail requests answer as Synapse does for media it
// cannot thumbnail (400 M_UNKNOWN), and the whole exchange allocates a few
// MB, not a gigabyte.
func TestThumbnailHostileUploadsStayBounded(t *testing.T) {
	e := newTestEnv(t, nil, Options{})
	hostile := flatPNG(t, 5600, 5600, 16, 6, false)
	var ids [4]string
	grew := allocated(func() {
		var wg sync.WaitGroup
		for i := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ids[i] = e.uploadImage(t, hostile)
			}()
		}
		wg.Wait()
		e.m.Wait()
	})
	if grew > 64<<20 {
		t.Fatalf("4 hostile uploads allocated %d MB", grew>>20)
	}
	for _, id := range ids {
		med, err := e.db.Media(context.Background(), "media.test", id)
		if err != nil || med.ThumbState != storage.ThumbTooLarge {
			t.Fatalf("hostile media state = %+v, %v", med, err)
		}
		for _, q := range []string{"?width=32&height=32&method=crop", "?width=800&height=600"} {
			resp, raw := e.do(t, "GET", "/_matrix/client/v1/media/thumbnail/media.test/"+id+q, e.token, "", nil)
			if resp.StatusCode != 400 || !strings.Contains(string(raw), "M_UNKNOWN") {
				t.Fatalf("thumbnail of hostile media = %d %s", resp.StatusCode, raw)
			}
		}
		resp, raw := e.do(t, "GET", "/_matrix/client/v1/media/download/media.test/"+id, e.token, "", nil)
		if resp.StatusCode != 200 || !bytes.Equal(raw, hostile) {
			t.Fatalf("download of hostile media = %d", resp.StatusCode)
		}
	}
}

// TestThumbnailLargeRequestFallsBack: a thumbnail size whose rendering
// alone would exceed the memory budget is served from the closest stored
// size, and does not mark the media as unthumbnailable.
func TestThumbnailLargeRequestFallsBack(t *testing.T) {
	e := newTestEnv(t, nil, Options{})
	// 2800x2800 RGB: 31 MB decoded, 42 MB with its reductions; a 4096x4096
	// RGBA crop would add 64 MB, more than the budget leaves.
	id := e.uploadImage(t, flatPNG(t, 2800, 2800, 8, 2, false))
	e.m.Wait()
	resp, raw := e.do(t, "GET", "/_matrix/client/v1/media/thumbnail/media.test/"+id+"?width=4096&height=4096&method=crop", e.token, "", nil)
	cfg, _, err := image.DecodeConfig(bytes.NewReader(raw))
	if resp.StatusCode != 200 || err != nil || cfg.Width >= 4096 {
		t.Fatalf("over-budget size = %d %v %+v, want a smaller stored thumbnail", resp.StatusCode, err, cfg)
	}
	med, _ := e.db.Media(context.Background(), "media.test", id)
	if med.ThumbState == storage.ThumbTooLarge || med.ThumbState == storage.ThumbNone {
		t.Fatalf("one costly size marked the media unthumbnailable: %d", med.ThumbState)
	}
	// A size within the budget is still made on demand.
	resp, raw = e.do(t, "GET", "/_matrix/client/v1/media/thumbnail/media.test/"+id+"?width=600&height=600&method=crop", e.token, "", nil)
	if cfg, _, err := image.DecodeConfig(bytes.NewReader(raw)); resp.StatusCode != 200 || err != nil || cfg.Width != 600 {
		t.Fatalf("600x600 thumbnail = %d %v %+v", resp.StatusCode, err, cfg)
	}
}

// peakSampler records the peak heap in use while it runs.
type peakSampler struct {
	stop chan struct{}
	done chan uint64
}

func samplePeak() *peakSampler {
	p := &peakSampler{stop: make(chan struct{}), done: make(chan uint64)}
	go func() {
		var peak uint64
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapInuse)
			select {
			case <-p.stop:
				p.done <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

func (p *peakSampler) end() uint64 { close(p.stop); return <-p.done }

// resetPeakRSS restarts the kernel's high-water mark of the process's RSS.
func resetPeakRSS() { os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSS is the process's RSS high-water mark (VmHWM) in bytes, 0 if unknown.
func peakRSS() uint64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// headerPNG is the header of an n x n PNG of the given layout (no pixels):
// enough for probe.
func headerPNG(n int, depth, colorType byte, interlaced bool) []byte {
	full := flatPNG(nil, 1, 1, depth, colorType, interlaced)
	out := append([]byte{}, full...)
	binary.BigEndian.PutUint32(out[16:], uint32(n))
	binary.BigEndian.PutUint32(out[20:], uint32(n))
	binary.BigEndian.PutUint32(out[29:], crc32.ChecksumIEEE(out[12:29]))
	return out
}

// largestAccepted is the side of the largest square PNG of a layout that
// still gets its standard thumbnails.
func largestAccepted(depth, colorType byte, interlaced bool) int {
	lo, hi := 1, 20000
	for lo < hi {
		mid := (lo + hi + 1) / 2
		in, err := probe(bytes.NewReader(headerPNG(mid, depth, colorType, interlaced)))
		if err == nil {
			_, _, err = admit(in, standardSizes, config.Default().Media.ThumbnailMemoryBytes)
		}
		if err == nil {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// BenchmarkThumbnailWorstAccepted uploads, four at a time, the images that
// need the most memory among those still thumbnailed (each just within the
// budget: 16-bit RGBA, interlaced or not, and 8-bit RGB), and the hostile
// 5600x5600 16-bit RGBA one (refused from its header), and reports the peak
// heap and the process's peak RSS (the test binary's own included).
//
//	go test -tags goolm ./mediaapi -run x -bench ThumbnailWorst -benchtime 3x
func BenchmarkThumbnailWorstAccepted(b *testing.B) {
	type layout struct {
		name              string
		depth, colorType  byte
		interlaced, fixed bool
		n                 int
	}
	for _, l := range []layout{
		{name: "png-rgba16", depth: 16, colorType: 6},
		{name: "png-rgba16-interlaced", depth: 16, colorType: 6, interlaced: true},
		{name: "png-rgb8", depth: 8, colorType: 2},
		{name: "png-rgba16-hostile", depth: 16, colorType: 6, fixed: true, n: 5600},
	} {
		if !l.fixed {
			l.n = largestAccepted(l.depth, l.colorType, l.interlaced)
		}
		data := flatPNG(b, l.n, l.n, l.depth, l.colorType, l.interlaced)
		b.Run(fmt.Sprintf("%s-%dx%d", l.name, l.n, l.n), func(b *testing.B) {
			e := newTestEnv(b, nil, Options{})
			var worstHeap, worstRSS uint64
			for i := 0; i < b.N; i++ {
				runtime.GC()
				debug.FreeOSMemory()
				resetPeakRSS()
				p := samplePeak()
				var wg sync.WaitGroup
				for range 4 {
					wg.Add(1)
					go func() { defer wg.Done(); e.uploadImage(b, data) }()
				}
				wg.Wait()
				e.m.Wait()
				worstHeap = max(worstHeap, p.end())
				worstRSS = max(worstRSS, peakRSS())
			}
			b.ReportMetric(float64(worstHeap)/(1<<20), "MB-peak-heap")
			b.ReportMetric(float64(worstRSS)/(1<<20), "MB-peak-RSS")
		})
	}
}

// TestThumbnailMemoryBudgetIsConfigurable: thumbnail_memory_bytes decides
// which images are thumbnailed.
func TestThumbnailMemoryBudgetIsConfigurable(t *testing.T) {
	img := flatPNG(t, 2000, 2000, 8, 2, false) // 16 MB as RGBA, 21 MB with its reductions
	for budget, want := range map[int64]int{16 << 20: storage.ThumbTooLarge, 100 << 20: storage.ThumbOK} {
		e := newTestEnv(t, func(c *config.Config) { c.Media.ThumbnailMemoryBytes = budget }, Options{})
		id := e.uploadImage(t, img)
		e.m.Wait()
		if med, err := e.db.Media(context.Background(), "media.test", id); err != nil || int(med.ThumbState) != want {
			t.Fatalf("budget %d MiB: thumbnail state %+v, %v; want %d", budget>>20, med, err, want)
		}
	}
}
