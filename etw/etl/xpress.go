package etl

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrCorrupt is wrapped by the errors of data that does not decode.
var ErrCorrupt = errors.New("corrupt data")

// DecompressXpress decompresses src, compressed with the plain LZ77
// ("XPRESS", COMPRESSION_FORMAT_XPRESS) algorithm of [MS-XCA] section 2.4,
// which ETW uses for compressed trace buffers, appending to dst. It stops
// with an error wrapping ErrCorrupt at a match that reaches before the start
// of the output or an encoding cut short, and when the output would pass
// limit bytes.
func DecompressXpress(dst, src []byte, limit int) ([]byte, error) {
	start := len(dst)
	in := 0
	var flags uint32
	flagCount := 0
	lastHalfByte := -1 // position of the half-used length nibble byte
	for {
		if flagCount == 0 {
			if in+4 > len(src) {
				return dst, nil // the end: no more flag words
			}
			flags = binary.LittleEndian.Uint32(src[in:])
			in += 4
			flagCount = 32
		}
		flagCount--
		if flags&(1<<flagCount) == 0 {
			if in >= len(src) {
				return dst, nil
			}
			if len(dst)-start >= limit {
				return dst, fmt.Errorf("xpress: output passes %d bytes: %w", limit, ErrCorrupt)
			}
			dst = append(dst, src[in])
			in++
			continue
		}
		if in >= len(src) {
			return dst, nil
		}
		if in+2 > len(src) {
			return dst, fmt.Errorf("xpress: match cut short at %d: %w", in, ErrCorrupt)
		}
		match := int(binary.LittleEndian.Uint16(src[in:]))
		in += 2
		length := match & 7
		offset := match>>3 + 1
		if length == 7 {
			if lastHalfByte < 0 {
				if in >= len(src) {
					return dst, fmt.Errorf("xpress: length cut short at %d: %w", in, ErrCorrupt)
				}
				length = int(src[in] & 0xf)
				lastHalfByte = in
				in++
			} else {
				length = int(src[lastHalfByte] >> 4)
				lastHalfByte = -1
			}
			if length == 15 {
				if in >= len(src) {
					return dst, fmt.Errorf("xpress: length cut short at %d: %w", in, ErrCorrupt)
				}
				length = int(src[in])
				in++
				if length == 255 {
					if in+2 > len(src) {
						return dst, fmt.Errorf("xpress: length cut short at %d: %w", in, ErrCorrupt)
					}
					length = int(binary.LittleEndian.Uint16(src[in:]))
					in += 2
					if length == 0 {
						if in+4 > len(src) {
							return dst, fmt.Errorf("xpress: length cut short at %d: %w", in, ErrCorrupt)
						}
						length = int(binary.LittleEndian.Uint32(src[in:]))
						in += 4
					}
					if length < 15+7 {
						return dst, fmt.Errorf("xpress: bad match length %d at %d: %w", length, in, ErrCorrupt)
					}
					length -= 15 + 7
				}
				length += 15
			}
			length += 7
		}
		length += 3
		if offset > len(dst)-start {
			return dst, fmt.Errorf("xpress: match %d bytes back at output %d: %w", offset, len(dst)-start, ErrCorrupt)
		}
		if len(dst)-start+length > limit || length < 0 {
			return dst, fmt.Errorf("xpress: output passes %d bytes: %w", limit, ErrCorrupt)
		}
		// The match may overlap what it writes (offset < length): copy in
		// runs of at most offset bytes, each already written.
		from := len(dst) - offset
		for length > 0 {
			n := min(length, len(dst)-from)
			dst = append(dst, dst[from:from+n]...)
			from += n
			length -= n
		}
	}
}
