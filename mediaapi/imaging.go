package mediaapi

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/draw"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"math"

	xdraw "golang.org/x/image/draw"
	"golang.org/x/image/webp"
)

// maxThumbnailPixels refuses to decode images larger than this (width x
// height from the header), against decompression bombs: a 32-megapixel image
// already takes 128 MB as RGBA.
const maxThumbnailPixels = 32_000_000

var (
	// errCannotThumbnail: not an image this server decodes, or a broken one.
	errCannotThumbnail = errors.New("cannot thumbnail this content")
	// errTooManyPixels: the header claims more than maxThumbnailPixels.
	errTooManyPixels = errors.New("image too large to thumbnail")
)

// source is a decoded image ready for thumbnailing.
type source struct {
	img    image.Image // as stored (EXIF orientation not applied), bounds at 0,0
	format string      // jpeg, png, gif, webp
	orient int         // EXIF orientation, 1-8
	w, h   int         // displayed size (after orientation)
}

// decodeSource decodes an image read from rs. The header is checked first:
// only JPEG, PNG, GIF (first frame) and WebP, and at most
// maxThumbnailPixels, before any pixel is decoded. Decoder panics on hostile
// input become errCannotThumbnail.
func decodeSource(rs io.ReadSeeker) (src *source, err error) {
	cfg, format, err := image.DecodeConfig(rs)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errCannotThumbnail, err)
	}
	switch format {
	case "jpeg", "png", "gif", "webp":
	default:
		return nil, fmt.Errorf("%w: format %s", errCannotThumbnail, format)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, fmt.Errorf("%w: empty image", errCannotThumbnail)
	}
	if int64(cfg.Width)*int64(cfg.Height) > maxThumbnailPixels {
		return nil, fmt.Errorf("%w: %dx%d", errTooManyPixels, cfg.Width, cfg.Height)
	}
	orient := 1
	if format == "jpeg" {
		if _, err := rs.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		orient = jpegOrientation(rs)
	}
	if _, err := rs.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	defer func() {
		if p := recover(); p != nil {
			src, err = nil, fmt.Errorf("%w: decoder panic: %v", errCannotThumbnail, p)
		}
	}()
	var img image.Image
	switch format {
	case "jpeg":
		img, err = jpeg.Decode(rs)
	case "png":
		img, err = png.Decode(rs)
	case "gif":
		img, err = gif.Decode(rs) // the first frame only
	case "webp":
		img, err = webp.Decode(rs)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errCannotThumbnail, err)
	}
	full := image.Rect(0, 0, cfg.Width, cfg.Height)
	if img.Bounds() != full {
		// A GIF frame may cover part of the logical screen.
		if !img.Bounds().In(full) {
			return nil, fmt.Errorf("%w: frame outside the image", errCannotThumbnail)
		}
		canvas := image.NewRGBA(full)
		draw.Draw(canvas, img.Bounds(), img, img.Bounds().Min, draw.Src)
		img = canvas
	}
	src = &source{img: img, format: format, orient: orient, w: cfg.Width, h: cfg.Height}
	if orient >= 5 {
		src.w, src.h = src.h, src.w
	}
	return src, nil
}

// plan is how one thumbnail is cut: a rectangle of the displayed image,
// scaled to w x h. original means the thumbnail would be the image itself.
type plan struct {
	crop     image.Rectangle
	w, h     int
	original bool
}

// makePlan follows the spec's thumbnail rules for an image of srcW x srcH:
// "scale" fits within reqW x reqH keeping the aspect ratio; "crop" fills
// exactly reqW x reqH (cropping the centre to that aspect ratio). Never
// upscale: an image no larger than the request is returned as is, and a crop
// that cannot be filled keeps the requested aspect ratio at the source's
// resolution.
func makePlan(srcW, srcH, reqW, reqH int, method string) plan {
	full := image.Rect(0, 0, srcW, srcH)
	if srcW <= reqW && srcH <= reqH {
		return plan{crop: full, w: srcW, h: srcH, original: true}
	}
	if method != "crop" {
		s := math.Min(float64(reqW)/float64(srcW), float64(reqH)/float64(srcH))
		w := max(1, int(math.Round(float64(srcW)*s)))
		h := max(1, int(math.Round(float64(srcH)*s)))
		return plan{crop: full, w: min(w, reqW), h: min(h, reqH)}
	}
	var cw, ch, w, h int
	if srcW >= reqW && srcH >= reqH {
		s := math.Max(float64(reqW)/float64(srcW), float64(reqH)/float64(srcH))
		cw = min(srcW, max(1, int(math.Round(float64(reqW)/s))))
		ch = min(srcH, max(1, int(math.Round(float64(reqH)/s))))
		w, h = reqW, reqH
	} else {
		// One side is already smaller than asked: cut the requested aspect
		// ratio out at full resolution.
		if int64(srcW)*int64(reqH) > int64(srcH)*int64(reqW) {
			ch = srcH
			cw = min(srcW, max(1, int(math.Round(float64(srcH)*float64(reqW)/float64(reqH)))))
		} else {
			cw = srcW
			ch = min(srcH, max(1, int(math.Round(float64(srcW)*float64(reqH)/float64(reqW)))))
		}
		w, h = cw, ch
	}
	x0, y0 := (srcW-cw)/2, (srcH-ch)/2
	crop := image.Rect(x0, y0, x0+cw, y0+ch)
	return plan{crop: crop, w: w, h: h, original: crop == full && w == srcW && h == srcH}
}

// toStored maps a rectangle of the displayed (oriented) image to the stored
// pixels of a rawW x rawH image with EXIF orientation o.
func toStored(r image.Rectangle, o, rawW, rawH int) image.Rectangle {
	pt := func(x, y int) image.Point {
		switch o {
		case 2:
			return image.Pt(rawW-x, y)
		case 3:
			return image.Pt(rawW-x, rawH-y)
		case 4:
			return image.Pt(x, rawH-y)
		case 5:
			return image.Pt(y, x)
		case 6:
			return image.Pt(y, rawH-x)
		case 7:
			return image.Pt(rawW-y, rawH-x)
		case 8:
			return image.Pt(rawW-y, x)
		}
		return image.Pt(x, y)
	}
	return image.Rectangle{Min: pt(r.Min.X, r.Min.Y), Max: pt(r.Max.X, r.Max.Y)}.Canon()
}

// render cuts and scales one thumbnail, then applies the EXIF orientation
// (to the small result, not the large source).
func render(src *source, p plan) *image.RGBA {
	return renderWith(src, p, xdraw.CatmullRom)
}

// renderWith is render with a given resampling kernel.
func renderWith(src *source, p plan, kernel *xdraw.Kernel) *image.RGBA {
	b := src.img.Bounds()
	crop := toStored(p.crop, src.orient, b.Dx(), b.Dy()).Add(b.Min)
	w, h := p.w, p.h
	if src.orient >= 5 {
		w, h = h, w
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	if crop.Dx() == w && crop.Dy() == h {
		draw.Draw(dst, dst.Bounds(), src.img, crop.Min, draw.Src)
	} else {
		kernel.Scale(dst, dst.Bounds(), src.img, crop, xdraw.Src, nil)
	}
	return orient(dst, src.orient)
}

// reduce picks, for each plan, a smaller copy of the source to render from.
// A filtered downscale reads every source pixel whatever the output size, so
// scaling a large photo straight to each size is slow. Instead the source is
// halved repeatedly with a box filter (a pyramid: cheap, built only as deep
// as needed) and each size is cut from the smallest level that is still at
// least twice the output's scale, so the final Catmull-Rom pass keeps its
// quality. Images whose pixel layout the box filter does not handle get one
// bilinear pass to twice the largest output's scale first.
func reduce(src *source, plans []plan) ([]*source, []plan) {
	srcs := make([]*source, len(plans))
	out := make([]plan, len(plans))
	scales := make([]float64, len(plans))
	maxScale := 0.0
	for i, p := range plans {
		scales[i] = max(float64(p.w)/float64(p.crop.Dx()), float64(p.h)/float64(p.crop.Dy()))
		maxScale = max(maxScale, scales[i])
		srcs[i], out[i] = src, p
	}
	if 2*maxScale > 0.5 {
		return srcs, out
	}
	base := src
	if !shrinkable(src.img) {
		f := 2 * maxScale
		ww, wh := max(1, int(math.Round(float64(src.w)*f))), max(1, int(math.Round(float64(src.h)*f)))
		img := renderWith(src, plan{crop: image.Rect(0, 0, src.w, src.h), w: ww, h: wh}, xdraw.BiLinear)
		base = &source{img: img, format: src.format, orient: 1, w: ww, h: wh}
	}
	levels := []*source{base}
	level := func(n int) *source {
		for len(levels) <= n {
			prev := levels[len(levels)-1]
			img := boxShrink(prev.img, 2)
			if img == nil {
				break
			}
			b := img.Bounds()
			l := &source{img: img, format: prev.format, orient: prev.orient, w: b.Dx(), h: b.Dy()}
			if l.orient >= 5 {
				l.w, l.h = l.h, l.w
			}
			levels = append(levels, l)
		}
		return levels[min(n, len(levels)-1)]
	}
	for i, p := range plans {
		// Level n is 1/2^n of base; keep it at least twice the output scale.
		baseScale := scales[i] * float64(src.w) / float64(base.w)
		n := 0
		for math.Ldexp(1, -(n+1)) >= 2*baseScale && base.w>>(n+1) >= p.w && base.h>>(n+1) >= 1 {
			n++
		}
		l := level(n)
		fx, fy := float64(l.w)/float64(src.w), float64(l.h)/float64(src.h)
		c := image.Rect(
			int(math.Round(float64(p.crop.Min.X)*fx)), int(math.Round(float64(p.crop.Min.Y)*fy)),
			int(math.Round(float64(p.crop.Max.X)*fx)), int(math.Round(float64(p.crop.Max.Y)*fy)),
		).Intersect(image.Rect(0, 0, l.w, l.h))
		if c.Empty() {
			c = image.Rect(0, 0, l.w, l.h)
		}
		srcs[i], out[i] = l, plan{crop: c, w: p.w, h: p.h, original: p.original}
	}
	return srcs, out
}

// shrinkable reports whether boxShrink handles img's pixel layout.
func shrinkable(img image.Image) bool {
	switch m := img.(type) {
	case *image.YCbCr, *image.RGBA, *image.NRGBA:
		return m.Bounds().Min == image.Point{}
	}
	return false
}

// boxShrink averages k x k blocks of a YCbCr, RGBA or NRGBA image (bounds
// at 0,0); nil for other image types.
func boxShrink(img image.Image, k int) image.Image {
	switch m := img.(type) {
	case *image.YCbCr:
		if m.Rect.Min != (image.Point{}) {
			return nil
		}
		w, h := m.Rect.Dx()/k, m.Rect.Dy()/k
		if w < 1 || h < 1 {
			return nil
		}
		out := image.NewYCbCr(image.Rect(0, 0, w, h), m.SubsampleRatio)
		boxPlane(out.Y, out.YStride, w, h, m.Y, m.YStride, m.Rect.Dx(), m.Rect.Dy(), k)
		scw, sch := chromaSize(m.SubsampleRatio, m.Rect.Dx(), m.Rect.Dy())
		ocw, och := chromaSize(m.SubsampleRatio, w, h)
		boxPlane(out.Cb, out.CStride, ocw, och, m.Cb, m.CStride, scw, sch, k)
		boxPlane(out.Cr, out.CStride, ocw, och, m.Cr, m.CStride, scw, sch, k)
		return out
	case *image.RGBA:
		return boxRGBA(m.Pix, m.Stride, m.Rect, k, func(r image.Rectangle) ([]uint8, int, image.Image) {
			o := image.NewRGBA(r)
			return o.Pix, o.Stride, o
		})
	case *image.NRGBA:
		return boxRGBA(m.Pix, m.Stride, m.Rect, k, func(r image.Rectangle) ([]uint8, int, image.Image) {
			o := image.NewNRGBA(r)
			return o.Pix, o.Stride, o
		})
	}
	return nil
}

// chromaSize is the size of the chroma planes of a w x h YCbCr image.
func chromaSize(r image.YCbCrSubsampleRatio, w, h int) (int, int) {
	switch r {
	case image.YCbCrSubsampleRatio422:
		return (w + 1) / 2, h
	case image.YCbCrSubsampleRatio420:
		return (w + 1) / 2, (h + 1) / 2
	case image.YCbCrSubsampleRatio440:
		return w, (h + 1) / 2
	case image.YCbCrSubsampleRatio411:
		return (w + 3) / 4, h
	case image.YCbCrSubsampleRatio410:
		return (w + 3) / 4, (h + 1) / 2
	}
	return w, h
}

// boxPlane fills a dw x dh plane with the means of k x k blocks of an
// sw x sh plane (blocks cut short at the source's edge).
func boxPlane(dst []uint8, dstride, dw, dh int, src []uint8, sstride, sw, sh, k int) {
	sums := make([]int, dw)
	for y := 0; y < dh; y++ {
		clear(sums)
		y0, y1 := y*k, min(y*k+k, sh)
		for sy := y0; sy < y1; sy++ {
			row := src[sy*sstride:]
			for x := 0; x < dw; x++ {
				x0, x1 := x*k, min(x*k+k, sw)
				t := 0
				for _, v := range row[x0:x1] {
					t += int(v)
				}
				sums[x] += t
			}
		}
		out := dst[y*dstride:]
		for x := 0; x < dw; x++ {
			n := (min(x*k+k, sw) - x*k) * (y1 - y0)
			if n > 0 {
				out[x] = uint8((sums[x] + n/2) / n)
			}
		}
	}
}

// boxRGBA averages k x k blocks of 4-byte pixels into a new image.
func boxRGBA(pix []uint8, stride int, r image.Rectangle, k int, alloc func(image.Rectangle) ([]uint8, int, image.Image)) image.Image {
	if r.Min != (image.Point{}) {
		return nil
	}
	w, h := r.Dx()/k, r.Dy()/k
	if w < 1 || h < 1 {
		return nil
	}
	dst, dstride, img := alloc(image.Rect(0, 0, w, h))
	sums := make([]int, 4*w)
	n := k * k
	for y := 0; y < h; y++ {
		clear(sums)
		for sy := y * k; sy < y*k+k; sy++ {
			row := pix[sy*stride:]
			for x := 0; x < w; x++ {
				p := row[4*x*k : 4*(x*k+k)]
				for i := 0; i < len(p); i += 4 {
					sums[4*x] += int(p[i])
					sums[4*x+1] += int(p[i+1])
					sums[4*x+2] += int(p[i+2])
					sums[4*x+3] += int(p[i+3])
				}
			}
		}
		out := dst[y*dstride:]
		for i := 0; i < 4*w; i++ {
			out[i] = uint8((sums[i] + n/2) / n)
		}
	}
	return img
}

// orient returns img turned upright for EXIF orientation o.
func orient(img *image.RGBA, o int) *image.RGBA {
	if o <= 1 || o > 8 {
		return img
	}
	rw, rh := img.Bounds().Dx(), img.Bounds().Dy()
	ow, oh := rw, rh
	if o >= 5 {
		ow, oh = rh, rw
	}
	out := image.NewRGBA(image.Rect(0, 0, ow, oh))
	for oy := 0; oy < oh; oy++ {
		for ox := 0; ox < ow; ox++ {
			var rx, ry int
			switch o {
			case 2:
				rx, ry = rw-1-ox, oy
			case 3:
				rx, ry = rw-1-ox, rh-1-oy
			case 4:
				rx, ry = ox, rh-1-oy
			case 5:
				rx, ry = oy, ox
			case 6:
				rx, ry = oy, rh-1-ox
			case 7:
				rx, ry = rw-1-oy, rh-1-ox
			case 8:
				rx, ry = rw-1-oy, ox
			}
			si := img.PixOffset(rx, ry)
			di := out.PixOffset(ox, oy)
			copy(out.Pix[di:di+4], img.Pix[si:si+4])
		}
	}
	return out
}

// encodeThumbnail writes a JPEG for JPEG sources (photos, no alpha) and a
// PNG otherwise (keeps transparency).
func encodeThumbnail(img image.Image, format string) ([]byte, string, error) {
	var buf bytes.Buffer
	if format == "jpeg" {
		if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 85}); err != nil {
			return nil, "", err
		}
		return buf.Bytes(), "image/jpeg", nil
	}
	if err := png.Encode(&buf, img); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), "image/png", nil
}

// formatContentType is the content type of a decoded format.
func formatContentType(format string) string {
	return "image/" + format
}
