package mediaapi

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
)

// exifScanLimit bounds how much of a JPEG is read looking for the EXIF
// segment (it must precede the image data; an APP1 segment is < 64 KiB).
const exifScanLimit = 512 << 10

// jpegOrientation returns the EXIF orientation (1-8) of a JPEG stream, or 1
// when there is none or the data is malformed. It walks the marker segments
// up to the start of scan and reads tag 0x0112 of IFD0 in the Exif APP1
// segment.
func jpegOrientation(r io.Reader) int {
	br := bufio.NewReader(io.LimitReader(r, exifScanLimit))
	var soi [2]byte
	if _, err := io.ReadFull(br, soi[:]); err != nil || soi != [2]byte{0xFF, 0xD8} {
		return 1
	}
	for {
		b, err := br.ReadByte()
		if err != nil {
			return 1
		}
		if b != 0xFF {
			return 1 // not at a marker: malformed
		}
		marker, err := br.ReadByte()
		for err == nil && marker == 0xFF { // fill bytes
			marker, err = br.ReadByte()
		}
		if err != nil {
			return 1
		}
		switch {
		case marker == 0xD9 || marker == 0xDA: // end of image, start of scan
			return 1
		case marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7): // no length
			continue
		}
		var lb [2]byte
		if _, err := io.ReadFull(br, lb[:]); err != nil {
			return 1
		}
		n := int(binary.BigEndian.Uint16(lb[:])) - 2
		if n < 0 {
			return 1
		}
		if marker != 0xE1 {
			if _, err := br.Discard(n); err != nil {
				return 1
			}
			continue
		}
		seg := make([]byte, n)
		if _, err := io.ReadFull(br, seg); err != nil {
			return 1
		}
		if rest, ok := bytes.CutPrefix(seg, []byte("Exif\x00\x00")); ok {
			if o := exifOrientation(rest); o != 0 {
				return o
			}
			return 1
		}
		// Another APP1 (e.g. XMP): keep looking.
	}
}

// exifOrientation reads the orientation tag from a TIFF-structured EXIF
// block; 0 when absent or invalid.
func exifOrientation(t []byte) int {
	if len(t) < 8 {
		return 0
	}
	var bo binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 0
	}
	if bo.Uint16(t[2:]) != 42 {
		return 0
	}
	off := int64(bo.Uint32(t[4:]))
	if off < 8 || off+2 > int64(len(t)) {
		return 0
	}
	count := int64(bo.Uint16(t[off:]))
	for i := int64(0); i < count; i++ {
		e := off + 2 + 12*i
		if e+12 > int64(len(t)) {
			return 0
		}
		if bo.Uint16(t[e:]) != 0x0112 {
			continue
		}
		// Type SHORT (3), count >= 1: the value sits in the first two bytes
		// of the value field.
		if bo.Uint16(t[e+2:]) != 3 || bo.Uint32(t[e+4:]) < 1 {
			return 0
		}
		if v := int(bo.Uint16(t[e+8:])); v >= 1 && v <= 8 {
			return v
		}
		return 0
	}
	return 0
}
