package mediaapi

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
)

// Decoding an image takes memory in proportion to its pixels times the bytes
// each pixel takes in the decoder's buffers, which depends on the format and
// on header fields (bit depth, colour type, components, progressive mode).
// probe reads those fields before any pixel is decoded, so that an image
// whose decoding would need more than the thumbnailer's memory budget is
// refused (it is stored, it just gets no thumbnails), and so that decodes run
// only while the budget has room for them.

// imageInfo is what the header of an image says about it.
type imageInfo struct {
	format string // jpeg, png, gif, webp
	rawW   int    // stored size (before EXIF orientation)
	rawH   int
	w, h   int // displayed size (after orientation)
	orient int // EXIF orientation, 1-8
	// decodeBytes is the peak the decoder holds; heldBytes what the decoded
	// image and the reductions made from it hold afterwards (see reduce).
	decodeBytes int64
	heldBytes   int64
}

// cost is the memory that decoding the image and rendering plans needs at
// its peak: the decoder's, or the decoded image with its reductions plus the
// costliest thumbnail being rendered (renderCost). Encoded thumbnails stream
// to disk.
func (in *imageInfo) cost(plans []plan) int64 {
	var out int64
	for _, p := range plans {
		if p.original && in.format != "gif" && in.orient == 1 {
			continue // served as is
		}
		out = max(out, renderCost(in.w, in.h, in.orient, p))
	}
	return max(in.decodeBytes, in.heldBytes+out)
}

// probe reads an image's header: format, size, orientation and memory cost.
// Only JPEG, PNG, GIF and WebP are accepted. rs is left at an unspecified
// position.
func probe(rs io.ReadSeeker) (*imageInfo, error) {
	cfg, format, err := image.DecodeConfig(rs)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errCannotThumbnail, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, fmt.Errorf("%w: empty image", errCannotThumbnail)
	}
	in := &imageInfo{format: format, rawW: cfg.Width, rawH: cfg.Height, orient: 1}
	px := int64(cfg.Width) * int64(cfg.Height)
	if px > maxThumbnailPixels {
		return nil, fmt.Errorf("%w: %dx%d", errImageTooLarge, cfg.Width, cfg.Height)
	}
	if _, err := rs.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	switch format {
	case "jpeg":
		fr, err := readJPEGFrame(rs)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errCannotThumbnail, err)
		}
		in.decodeBytes, in.heldBytes = fr.cost()
		if _, err := rs.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		in.orient = jpegOrientation(rs)
	case "png":
		interlaced, err := pngInterlaced(rs)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errCannotThumbnail, err)
		}
		in.decodeBytes, in.heldBytes = pngCost(cfg, interlaced)
	case "gif":
		// The first frame (one byte a pixel) is drawn onto an RGBA canvas
		// of the logical screen when it does not cover it.
		in.decodeBytes, in.heldBytes = 5*px, 4*px+reducedRGBA(px)
	case "webp":
		in.decodeBytes, in.heldBytes = webpCost(cfg)
	default:
		return nil, fmt.Errorf("%w: format %s", errCannotThumbnail, format)
	}
	in.w, in.h = in.rawW, in.rawH
	if in.orient >= 5 {
		in.w, in.h = in.h, in.w
	}
	return in, nil
}

// reducedRGBA is what reduce allocates for an image it cannot halve in
// place: one RGBA copy of at most half each side, then its pyramid.
func reducedRGBA(px int64) int64 { return px * 4 / 4 * 4 / 3 }

// pngCost follows image/png: the image in the colour model the header
// declares (interlaced images also allocate each of the seven passes, as
// much again in all).
func pngCost(cfg image.Config, interlaced bool) (decode, held int64) {
	px := int64(cfg.Width) * int64(cfg.Height)
	bpp := int64(4)
	switch cfg.ColorModel {
	case color.GrayModel:
		bpp = 1
	case color.Gray16Model:
		bpp = 2
	case color.RGBA64Model, color.NRGBA64Model:
		bpp = 8
	case color.RGBAModel, color.NRGBAModel:
		bpp = 4
	default:
		if _, ok := cfg.ColorModel.(color.Palette); ok {
			bpp = 1
		}
	}
	img := px * bpp
	decode = img
	if interlaced {
		decode += img
	}
	if bpp == 4 { // RGBA and NRGBA are halved in place (reduce)
		return decode, img + img/3
	}
	return decode, img + reducedRGBA(px)
}

// webpCost follows x/image/webp: lossy images are YCbCr 4:2:0 padded to
// 16-pixel macroblocks; an alpha channel adds a plane, decoded through a
// lossless NRGBA image when compressed; lossless images decode to NRGBA,
// through a second buffer when a colour-indexing transform packs pixels.
func webpCost(cfg image.Config) (decode, held int64) {
	px := int64(cfg.Width) * int64(cfg.Height)
	padded := int64((cfg.Width+15)/16*16) * int64((cfg.Height+15)/16*16)
	switch cfg.ColorModel {
	case color.NRGBAModel:
		return 8 * px, 4*px + 4*px/3
	case color.NYCbCrAModel:
		ycc := padded*3/2 + px
		return ycc + 8*px, ycc + reducedRGBA(px)
	default:
		ycc := padded * 3 / 2
		return ycc, ycc + ycc/3
	}
}

// pngInterlaced reads the interlace method from the IHDR chunk.
func pngInterlaced(r io.Reader) (bool, error) {
	var hdr [29]byte // signature (8), IHDR length and type (8), IHDR data (13)
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return false, err
	}
	if string(hdr[12:16]) != "IHDR" {
		return false, errors.New("png: no IHDR chunk first")
	}
	return hdr[28] == 1, nil
}

// jpegFrame is the frame header (SOFn) of a JPEG.
type jpegFrame struct {
	progressive bool
	w, h        int
	comps       []jpegComponent
	// rgb: three components that image/jpeg converts to a new RGBA image
	// (no JFIF marker, and an Adobe transform of 0 or components named R,
	// G, B).
	rgb bool
}

type jpegComponent struct {
	id   byte
	h, v int // sampling factors, 1-4
}

// maxJPEGSegments bounds the marker segments walked to find the frame header.
const maxJPEGSegments = 1024

// readJPEGFrame walks a JPEG's marker segments up to its frame header.
func readJPEGFrame(r io.Reader) (*jpegFrame, error) {
	br := bufio.NewReader(r)
	var soi [2]byte
	if _, err := io.ReadFull(br, soi[:]); err != nil || soi != [2]byte{0xFF, 0xD8} {
		return nil, errors.New("jpeg: missing SOI")
	}
	var jfif, adobeRGB bool
	for i := 0; i < maxJPEGSegments; i++ {
		b, err := br.ReadByte()
		if err != nil {
			return nil, err
		}
		if b != 0xFF {
			return nil, errors.New("jpeg: not at a marker")
		}
		marker, err := br.ReadByte()
		for err == nil && marker == 0xFF {
			marker, err = br.ReadByte()
		}
		if err != nil {
			return nil, err
		}
		switch {
		case marker == 0xD9 || marker == 0xDA:
			return nil, errors.New("jpeg: no frame header before the image data")
		case marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7):
			continue
		}
		var lb [2]byte
		if _, err := io.ReadFull(br, lb[:]); err != nil {
			return nil, err
		}
		n := int(binary.BigEndian.Uint16(lb[:])) - 2
		if n < 0 {
			return nil, errors.New("jpeg: bad segment length")
		}
		// SOF0-SOF15 except DHT (C4), JPG (C8) and DAC (CC); APP0 (JFIF)
		// and APP14 (Adobe) decide the colour transform.
		isSOF := marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC
		if !isSOF && !((marker == 0xE0 || marker == 0xEE) && n <= 256) {
			if _, err := br.Discard(n); err != nil {
				return nil, err
			}
			continue
		}
		seg := make([]byte, n)
		if _, err := io.ReadFull(br, seg); err != nil {
			return nil, err
		}
		switch {
		case marker == 0xE0:
			jfif = jfif || (len(seg) >= 5 && string(seg[:5]) == "JFIF\x00")
		case marker == 0xEE:
			if len(seg) >= 12 && string(seg[:5]) == "Adobe" {
				adobeRGB = seg[11] == 0
			}
		default:
			fr, err := parseSOF(marker, seg)
			if err != nil {
				return nil, err
			}
			named := len(fr.comps) == 3 && fr.comps[0].id == 'R' && fr.comps[1].id == 'G' && fr.comps[2].id == 'B'
			fr.rgb = len(fr.comps) == 3 && !jfif && (adobeRGB || named)
			return fr, nil
		}
	}
	return nil, errors.New("jpeg: too many segments before the frame header")
}

// parseSOF reads a frame header segment.
func parseSOF(marker byte, seg []byte) (*jpegFrame, error) {
	if len(seg) < 6 {
		return nil, errors.New("jpeg: short frame header")
	}
	fr := &jpegFrame{
		progressive: marker == 0xC2 || marker == 0xC6 || marker == 0xCA || marker == 0xCE,
		h:           int(binary.BigEndian.Uint16(seg[1:3])),
		w:           int(binary.BigEndian.Uint16(seg[3:5])),
	}
	n := int(seg[5])
	if n < 1 || n > 4 || len(seg) < 6+3*n {
		return nil, errors.New("jpeg: bad component count")
	}
	for i := 0; i < n; i++ {
		hv := seg[6+3*i+1]
		c := jpegComponent{id: seg[6+3*i], h: int(hv >> 4), v: int(hv & 0x0F)}
		if c.h < 1 || c.h > 4 || c.v < 1 || c.v > 4 {
			return nil, errors.New("jpeg: bad sampling factors")
		}
		fr.comps = append(fr.comps, c)
	}
	return fr, nil
}

// cost follows image/jpeg: one byte per sample of every component plane,
// padded to whole MCUs; progressive images also keep every DCT coefficient
// (four bytes a sample) until the end; four-component (CMYK) images are
// converted into a new four-byte-a-pixel image.
func (fr *jpegFrame) cost() (decode, held int64) {
	hmax, vmax := 1, 1
	for _, c := range fr.comps {
		hmax, vmax = max(hmax, c.h), max(vmax, c.v)
	}
	mxx := int64((fr.w + 8*hmax - 1) / (8 * hmax))
	myy := int64((fr.h + 8*vmax - 1) / (8 * vmax))
	var planes int64
	for _, c := range fr.comps {
		planes += 8 * int64(c.h) * mxx * 8 * int64(c.v) * myy
	}
	px := int64(fr.w) * int64(fr.h)
	decode = planes
	if fr.progressive {
		decode += 4 * planes
	}
	switch {
	case fr.rgb:
		return decode + 4*px, 4*px + 4*px/3
	case len(fr.comps) == 3: // YCbCr, halved in place by reduce
		return decode, planes + planes/3
	case len(fr.comps) == 4:
		return decode + 4*px, 4*px + reducedRGBA(px)
	}
	return decode, planes + reducedRGBA(px)
}
