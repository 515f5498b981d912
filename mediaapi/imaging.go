package mediaapi

import (
	"errors"
	"fmt"
	"image"
	"image/draw"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"math"

	"golang.org/x/image/webp"
)

// maxThumbnailPixels refuses to decode images with more pixels than this
// (width x height from the header), as Synapse's max_image_pixels does.
// Memory is bounded separately, by the thumbnail memory budget.
const maxThumbnailPixels = 32_000_000

var (
	// errCannotThumbnail: not an image this server decodes, or a broken one.
	errCannotThumbnail = errors.New("cannot thumbnail this content")
	// errImageTooLarge: the header claims more than maxThumbnailPixels, or
	// decoding would need more than the thumbnail memory budget.
	errImageTooLarge = errors.New("image too large to thumbnail")
)

// source is a decoded image ready for thumbnailing.
type source struct {
	img    image.Image // as stored (EXIF orientation not applied), bounds at 0,0
	format string      // jpeg, png, gif, webp
	orient int         // EXIF orientation, 1-8
	w, h   int         // displayed size (after orientation)
}

// decodeProbed decodes the pixels of a probed image: JPEG, PNG, GIF (first
// frame) or WebP. Decoder panics on hostile input become errCannotThumbnail.
func decodeProbed(rs io.ReadSeeker, in *imageInfo) (src *source, err error) {
	if _, err := rs.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	defer func() {
		if p := recover(); p != nil {
			src, err = nil, fmt.Errorf("%w: decoder panic: %v", errCannotThumbnail, p)
		}
	}()
	var img image.Image
	switch in.format {
	case "jpeg":
		img, err = jpeg.Decode(rs)
	case "png":
		img, err = png.Decode(rs)
	case "gif":
		img, err = gif.Decode(rs) // the first frame only
	case "webp":
		img, err = webp.Decode(rs)
	default:
		err = fmt.Errorf("format %s", in.format)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errCannotThumbnail, err)
	}
	full := image.Rect(0, 0, in.rawW, in.rawH)
	if img.Bounds() != full {
		// A GIF frame may cover part of the logical screen.
		if !img.Bounds().In(full) {
			return nil, fmt.Errorf("%w: frame outside the image", errCannotThumbnail)
		}
		canvas := image.NewRGBA(full)
		draw.Draw(canvas, img.Bounds(), img, img.Bounds().Min, draw.Src)
		img = canvas
	}
	return &source{img: img, format: in.format, orient: in.orient, w: in.w, h: in.h}, nil
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

// thumbnailType is the content type of thumbnails of a format: JPEG for
// JPEG sources (photos, no alpha), PNG otherwise (keeps transparency).
func thumbnailType(format string) string {
	if format == "jpeg" {
		return "image/jpeg"
	}
	return "image/png"
}

// encodeThumbnail writes img to w in the format thumbnailType names.
func encodeThumbnail(w io.Writer, img image.Image, format string) error {
	if format == "jpeg" {
		return jpeg.Encode(w, img, &jpeg.Options{Quality: 85})
	}
	return png.Encode(w, img)
}

// formatContentType is the content type of a decoded format.
func formatContentType(format string) string {
	return "image/" + format
}
