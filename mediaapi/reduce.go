package mediaapi

import (
	"image"
	"image/draw"
	"math"

	xdraw "golang.org/x/image/draw"
)

const (
	// kernelScratchPerPixel is what x/image/draw's separable scaler keeps
	// for each destination column of each source row: four float64s.
	kernelScratchPerPixel = 32
	// maxKernelScratch bounds that buffer: above it a thumbnail is scaled
	// with approximate bilinear interpolation, which needs none (from a
	// pyramid level less than twice the output's size, it still looks fine).
	maxKernelScratch = 32 << 20
)

// render cuts and scales one thumbnail, then applies the EXIF orientation
// (to the small result, not the large source).
func render(src *source, p plan) *image.RGBA {
	b := src.img.Bounds()
	crop := toStored(p.crop, src.orient, b.Dx(), b.Dy()).Add(b.Min)
	w, h := p.w, p.h
	if src.orient >= 5 {
		w, h = h, w
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	switch {
	case crop.Dx() == w && crop.Dy() == h:
		draw.Draw(dst, dst.Bounds(), src.img, crop.Min, draw.Src)
	case kernelScratch(w, crop.Dy()) <= maxKernelScratch:
		xdraw.CatmullRom.Scale(dst, dst.Bounds(), src.img, crop, xdraw.Src, nil)
	default:
		xdraw.ApproxBiLinear.Scale(dst, dst.Bounds(), src.img, crop, xdraw.Src, nil)
	}
	return orient(dst, src.orient)
}

// kernelScratch is the scratch buffer of a Catmull-Rom pass to a
// destination dstW wide from srcRows source rows (stored orientation).
func kernelScratch(dstW, srcRows int) int64 {
	return int64(dstW) * int64(srcRows) * kernelScratchPerPixel
}

// renderCost is the memory render takes for plan p of an image whose
// displayed size is w x h, from pyramid level levelFor(p): the RGBA result
// (twice when an orientation is applied) and the scaler's scratch buffer.
func renderCost(w, h, orient int, p plan) int64 {
	n := levelFor(p)
	cw, ch := p.crop.Dx()>>n, p.crop.Dy()>>n
	dw, dh := p.w, p.h
	if orient >= 5 {
		cw, ch, dw, dh = ch, cw, dh, dw
	}
	out := int64(dw) * int64(dh) * 4
	if orient > 1 {
		out *= 2
	}
	if scratch := kernelScratch(dw, ch+2); (cw != dw || ch != dh) && scratch <= maxKernelScratch {
		out += scratch
	}
	return out
}

// levelFor is the pyramid level a plan is rendered from: the smallest
// halving of the source that still holds the crop at no less than the
// output's size, so the final pass scales down by less than two (as
// libvips' shrink-then-reduce does).
func levelFor(p plan) int {
	n := 0
	for n < 30 && p.crop.Dx()>>(n+1) >= p.w && p.crop.Dy()>>(n+1) >= p.h {
		n++
	}
	return n
}

// reduce picks, for each plan, a smaller copy of the source to render from.
// A filtered downscale reads every source pixel, and x/image/draw's keeps a
// scratch buffer as large as the output's width times the source's height,
// so scaling a large photo straight to each size is slow and costly.
// Instead the source is halved repeatedly with a box filter (a pyramid:
// cheap, built only as deep as needed) and each size is cut from the level
// levelFor names. Images whose pixel layout the fast box filter does not
// handle are halved once through their RGBA64 values into RGBA first.
func reduce(src *source, plans []plan) ([]*source, []plan) {
	srcs := make([]*source, len(plans))
	out := make([]plan, len(plans))
	levels := []*source{src}
	level := func(n int) *source {
		for len(levels) <= n {
			prev := levels[len(levels)-1]
			var img image.Image
			if shrinkable(prev.img) {
				img = boxShrink(prev.img, 2)
			} else {
				img = boxGeneric(prev.img, 2)
			}
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
		if p.original {
			srcs[i], out[i] = src, p
			continue
		}
		l := level(levelFor(p))
		if l == src {
			srcs[i], out[i] = src, p
			continue
		}
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

// boxGeneric averages k x k blocks of any image into a new RGBA image,
// reading pixels through RGBA64At (no allocation per pixel); nil when the
// result would be empty.
func boxGeneric(img image.Image, k int) *image.RGBA {
	b := img.Bounds()
	w, h := b.Dx()/k, b.Dy()/k
	if w < 1 || h < 1 {
		return nil
	}
	src, ok := img.(image.RGBA64Image)
	if !ok {
		return nil
	}
	out := image.NewRGBA(image.Rect(0, 0, w, h))
	n := uint32(k * k)
	for y := 0; y < h; y++ {
		row := out.Pix[y*out.Stride:]
		for x := 0; x < w; x++ {
			var r, g, bl, a uint32
			for sy := b.Min.Y + y*k; sy < b.Min.Y+y*k+k; sy++ {
				for sx := b.Min.X + x*k; sx < b.Min.X+x*k+k; sx++ {
					c := src.RGBA64At(sx, sy)
					r, g, bl, a = r+uint32(c.R), g+uint32(c.G), bl+uint32(c.B), a+uint32(c.A)
				}
			}
			// Means of premultiplied 16-bit values, to 8 bits.
			row[4*x], row[4*x+1], row[4*x+2], row[4*x+3] = uint8(r/n>>8), uint8(g/n>>8), uint8(bl/n>>8), uint8(a/n>>8)
		}
	}
	return out
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
