package etl

import (
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"unicode/utf16"
)

// Writer writes a trace in the container format of Windows' .etl files:
// a header buffer holding the logfile header, then buffers of records, one
// CPU's records per buffer, compressed with XPRESS as WPR and PerfView
// write them, or not. It is for tests and fixtures: synthetic traces of
// events Windows logs, in the bytes a real trace has. Build one with
// NewWriter; nothing is written before Close.
type Writer struct {
	h        LogfileHeader
	bufSize  int
	compress bool
	open     map[uint16][]byte // per CPU: the events of the buffer being filled
	first    map[uint16]int64  // per CPU: the first time stamp in it
	out      [][]byte          // finished buffers
	seq      int64
}

// NewWriter returns a writer of a trace with logfile header h (its
// BuffersWritten is set by Close; PointerSize must be 4 or 8) and buffers
// of bufSize bytes (their header included).
func NewWriter(h LogfileHeader, bufSize int, compress bool) (*Writer, error) {
	if h.PointerSize != 4 && h.PointerSize != 8 {
		return nil, fmt.Errorf("pointer size %d", h.PointerSize)
	}
	if bufSize < 1024 || bufSize > maxBufferSize {
		return nil, fmt.Errorf("buffer size %d", bufSize)
	}
	h.BufferSize = uint32(bufSize)
	return &Writer{h: h, bufSize: bufSize, compress: compress, open: map[uint16][]byte{}, first: map[uint16]int64{}}, nil
}

// Kernel adds a classic kernel event (hook group/opcode, event version)
// logged on cpu with a SYSTEM header (thread and process ids) or, when
// perfinfo is set, a PERFINFO header (neither). The header's pointer size
// is the trace's.
func (w *Writer) Kernel(cpu uint16, perfinfo bool, group, opcode, version uint8, tid, pid uint32, ts int64, payload []byte) error {
	kind := KindSystem64
	if perfinfo {
		kind = KindPerfinfo64
	}
	if w.h.PointerSize == 4 {
		kind--
	}
	hs := minHeaderSize(kind)
	size := hs + len(payload)
	if size > 0xffff {
		return fmt.Errorf("record of %d bytes", size)
	}
	rec := make([]byte, hs, (size+7)&^7)
	binary.LittleEndian.PutUint32(rec[0:], 0xc0000000|uint32(kind)<<16|uint32(version))
	binary.LittleEndian.PutUint16(rec[4:], uint16(size))
	rec[6], rec[7] = opcode, group
	if perfinfo {
		binary.LittleEndian.PutUint64(rec[8:], uint64(ts))
	} else {
		binary.LittleEndian.PutUint32(rec[8:], tid)
		binary.LittleEndian.PutUint32(rec[12:], pid)
		binary.LittleEndian.PutUint64(rec[16:], uint64(ts))
	}
	rec = append(rec, payload...)
	for len(rec)%8 != 0 {
		rec = append(rec, 0)
	}
	return w.add(cpu, rec, ts)
}

// add appends a record to cpu's open buffer, closing it first when full.
func (w *Writer) add(cpu uint16, rec []byte, ts int64) error {
	room := w.bufSize - BufferHeaderSize
	if len(rec) > room {
		return fmt.Errorf("record of %d bytes in %d-byte buffers", len(rec), w.bufSize)
	}
	if len(w.open[cpu])+len(rec) > room {
		w.flush(cpu)
	}
	if len(w.open[cpu]) == 0 {
		w.first[cpu] = ts
	}
	w.open[cpu] = append(w.open[cpu], rec...)
	return nil
}

// flush closes cpu's open buffer.
func (w *Writer) flush(cpu uint16) {
	ev := w.open[cpu]
	if len(ev) == 0 {
		return
	}
	w.seq++
	w.out = append(w.out, w.buffer(ev, cpu, w.first[cpu], w.seq, 0, w.compress))
	w.open[cpu] = nil
}

// buffer makes one buffer: header, then the events, compressed or padded
// with 0xFF to the buffer size.
func (w *Writer) buffer(ev []byte, cpu uint16, ts, seq int64, typ uint16, compress bool) []byte {
	filled := BufferHeaderSize + len(ev)
	flags := uint16(BufferFlagProcIndex)
	var body []byte
	if compress {
		flags |= BufferFlagCompressed
		body = CompressXpress(ev)
	} else {
		body = slices.Clone(ev)
		for len(body) < w.bufSize-BufferHeaderSize {
			body = append(body, 0xff)
		}
	}
	if typ == 4 {
		flags = BufferFlagFlushMarker
	}
	b := make([]byte, BufferHeaderSize, BufferHeaderSize+len(body))
	le := binary.LittleEndian
	le.PutUint32(b[0:], uint32(BufferHeaderSize+len(body)))
	le.PutUint32(b[4:], uint32(filled))
	le.PutUint32(b[8:], uint32(filled))
	le.PutUint64(b[0x10:], uint64(ts))
	le.PutUint64(b[0x18:], uint64(seq))
	le.PutUint16(b[0x28:], cpu)
	le.PutUint32(b[0x2c:], 3)
	le.PutUint32(b[0x30:], uint32(filled))
	le.PutUint16(b[0x34:], flags)
	le.PutUint16(b[0x36:], typ)
	return append(b, body...)
}

// Close flushes every buffer and writes the trace to out: the header
// buffer, then the buffers in the order they filled up.
func (w *Writer) Close(out io.Writer) error {
	cpus := make([]uint16, 0, len(w.open))
	for c := range w.open {
		cpus = append(cpus, c)
	}
	slices.Sort(cpus)
	for _, c := range cpus {
		w.flush(c)
	}
	h := w.h
	h.BuffersWritten = uint32(len(w.out) + 1)
	p := logfileHeaderPayload(h)
	hs := minHeaderSize(KindSystem64)
	size := hs + len(p)
	rec := make([]byte, hs, (size+7)&^7)
	binary.LittleEndian.PutUint32(rec[0:], 0xc0000000|uint32(KindSystem64)<<16|2)
	binary.LittleEndian.PutUint16(rec[4:], uint16(size))
	rec = append(rec, p...)
	for len(rec)%8 != 0 {
		rec = append(rec, 0)
	}
	if _, err := out.Write(w.buffer(rec, 0, 0, 0, 4, false)); err != nil {
		return err
	}
	for _, b := range w.out {
		if _, err := out.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// logfileHeaderPayload lays h out as TRACE_LOGFILE_HEADER, then the logger
// and file names.
func logfileHeaderPayload(h LogfileHeader) []byte {
	ps := int(h.PointerSize)
	fixed := logfileHeaderFixed(ps)
	p := make([]byte, fixed)
	le := binary.LittleEndian
	le.PutUint32(p[0:], h.BufferSize)
	le.PutUint32(p[4:], h.Version)
	le.PutUint32(p[8:], h.OSBuild)
	le.PutUint32(p[12:], h.NumberOfProcessors)
	le.PutUint64(p[16:], uint64(h.EndTime))
	le.PutUint32(p[32:], h.LogFileMode)
	le.PutUint32(p[36:], h.BuffersWritten)
	le.PutUint32(p[44:], h.PointerSize)
	le.PutUint32(p[48:], h.EventsLost)
	le.PutUint32(p[52:], h.CPUSpeedMHz)
	q := fixed - 32
	le.PutUint64(p[q:], uint64(h.BootTime))
	le.PutUint64(p[q+8:], h.PerfFreq)
	le.PutUint64(p[q+16:], uint64(h.StartTime))
	le.PutUint32(p[q+24:], h.ClockType)
	le.PutUint32(p[q+28:], h.BuffersLost)
	for _, s := range []string{h.LoggerName, h.LogFileName} {
		for _, u := range utf16.Encode([]rune(s)) {
			p = le.AppendUint16(p, u)
		}
		p = append(p, 0, 0)
	}
	return p
}

// CompressXpress compresses src with the plain LZ77 ("XPRESS") algorithm
// of [MS-XCA] that DecompressXpress reads: a greedy encoder with a hash of
// three-byte prefixes over an 8 KB window.
func CompressXpress(src []byte) []byte {
	const window = 8192
	out := make([]byte, 0, len(src)/2+16)
	le := binary.LittleEndian
	flagPos, nflags := -1, 0
	var flags uint32
	halfByte := -1
	put := func(isMatch bool) {
		if nflags == 32 || flagPos < 0 {
			if flagPos >= 0 {
				le.PutUint32(out[flagPos:], flags)
			}
			flagPos = len(out)
			out = append(out, 0, 0, 0, 0)
			flags, nflags = 0, 0
		}
		flags <<= 1
		if isMatch {
			flags |= 1
		}
		nflags++
	}
	head := map[uint32]int{}
	for i := 0; i < len(src); {
		best, bestOff := 0, 0
		if i+3 <= len(src) {
			key := uint32(src[i]) | uint32(src[i+1])<<8 | uint32(src[i+2])<<16
			if j, ok := head[key]; ok && i-j <= window {
				n := 0
				for i+n < len(src) && src[j+n] == src[i+n] && n < 1<<16 {
					n++
				}
				if n >= 3 {
					best, bestOff = n, i-j
				}
			}
			head[key] = i
		}
		if best == 0 {
			put(false)
			out = append(out, src[i])
			i++
			continue
		}
		put(true)
		m := best - 3
		low := min(m, 7)
		out = le.AppendUint16(out, uint16((bestOff-1)<<3|low))
		if m >= 7 {
			m -= 7
			nib := min(m, 15)
			if halfByte < 0 {
				halfByte = len(out)
				out = append(out, byte(nib))
			} else {
				out[halfByte] |= byte(nib << 4)
				halfByte = -1
			}
			if m >= 15 {
				m -= 15
				if m < 255 {
					out = append(out, byte(m))
				} else {
					out = append(out, 255)
					if v := best - 3; v < 1<<16 {
						out = le.AppendUint16(out, uint16(v))
					} else {
						out = le.AppendUint16(out, 0)
						out = le.AppendUint32(out, uint32(v))
					}
				}
			}
		}
		for k := i + 1; k < i+best && k+3 <= len(src); k++ {
			head[uint32(src[k])|uint32(src[k+1])<<8|uint32(src[k+2])<<16] = k
		}
		i += best
	}
	if flagPos >= 0 {
		flags <<= 32 - nflags
		// Unused flag bits say "match": a decoder finds the input at its
		// end there and stops.
		flags |= 1<<(32-nflags) - 1
		le.PutUint32(out[flagPos:], flags)
	}
	return out
}
