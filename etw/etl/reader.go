// Package etl reads the .etl trace files Windows writes (WPR, xperf,
// PerfView, logman, autologgers) in pure Go, on any operating system: the
// buffers of the file container, compressed or not, the logfile header,
// and every event header kind, giving each record's raw header fields and
// payload. It knows no event layouts: etw decodes the kernel events a pool
// profile needs, fed by the records this package reads.
package etl

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"unicode/utf16"
)

// BufferHeaderSize is the size of WMI_BUFFER_HEADER, which starts every
// buffer of a trace file.
const BufferHeaderSize = 72

// Buffer flags (WMI_BUFFER_HEADER.BufferFlag).
const (
	BufferFlagFlushMarker = 0x0001
	BufferFlagEventsLost  = 0x0002
	BufferFlagBufferLost  = 0x0004
	BufferFlagProcIndex   = 0x0020
	BufferFlagCompressed  = 0x0040
)

// maxBufferSize bounds the buffers this reader accepts (ETW's are at most
// 1 MB before compression; 16 MB leaves room).
const maxBufferSize = 16 << 20

// HeaderKind is the kind of an event record's header: the header type byte
// of its marker.
type HeaderKind uint8

// Header kinds (TRACE_HEADER_TYPE_*).
const (
	KindSystem32      HeaderKind = 0x01
	KindSystem64      HeaderKind = 0x02
	KindCompact32     HeaderKind = 0x03
	KindCompact64     HeaderKind = 0x04
	KindFullHeader32  HeaderKind = 0x0a
	KindInstance32    HeaderKind = 0x0b
	KindTimed         HeaderKind = 0x0c
	KindError         HeaderKind = 0x0d
	KindWnode         HeaderKind = 0x0e
	KindMessage       HeaderKind = 0x0f
	KindPerfinfo32    HeaderKind = 0x10
	KindPerfinfo64    HeaderKind = 0x11
	KindEventHeader32 HeaderKind = 0x12
	KindEventHeader64 HeaderKind = 0x13
	KindFullHeader64  HeaderKind = 0x14
	KindInstance64    HeaderKind = 0x15
)

// Class is the family of a header kind, as trace readers name them.
func (k HeaderKind) Class() string {
	switch k {
	case KindSystem32, KindSystem64:
		return "SystemHeader"
	case KindCompact32, KindCompact64:
		return "CompactHeader"
	case KindPerfinfo32, KindPerfinfo64:
		return "PerfinfoTraceHeader"
	case KindEventHeader32, KindEventHeader64:
		return "EventHeader"
	case KindFullHeader32, KindFullHeader64:
		return "EventTraceHeader"
	case KindInstance32, KindInstance64:
		return "EventInstanceHeader"
	case KindTimed:
		return "TimedHeader"
	case KindError:
		return "ErrorHeader"
	case KindWnode:
		return "WnodeHeader"
	case KindMessage:
		return "MessageHeader"
	}
	return fmt.Sprintf("HeaderKind(%#x)", uint8(k))
}

// Kernel reports whether records of this kind are classic kernel events,
// identified by a group and an opcode (the hook id).
func (k HeaderKind) Kernel() bool {
	switch k {
	case KindSystem32, KindSystem64, KindCompact32, KindCompact64, KindPerfinfo32, KindPerfinfo64:
		return true
	}
	return false
}

// is64 reports whether the header was logged with 64-bit pointers.
func (k HeaderKind) is64() bool {
	switch k {
	case KindSystem64, KindCompact64, KindPerfinfo64, KindEventHeader64, KindFullHeader64, KindInstance64:
		return true
	}
	return false
}

// NoID is the thread and process id of a record whose header has none
// (PERFINFO headers), as ETW consumers see it.
const NoID = 0xffffffff

// GUID is a Windows GUID as stored in a trace (little-endian fields), with
// the field layout of windows.GUID and the C GUID structure.
type GUID struct {
	Data1 uint32
	Data2 uint16
	Data3 uint16
	Data4 [8]byte
}

// String returns the GUID in registry format, lower case and in braces:
// "{0268a8b6-74fd-4302-9dd0-6e8f1795c0cf}".
func (g GUID) String() string {
	return fmt.Sprintf("{%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x}", g.Data1, g.Data2, g.Data3,
		g.Data4[0], g.Data4[1], g.Data4[2], g.Data4[3], g.Data4[4], g.Data4[5], g.Data4[6], g.Data4[7])
}

func readGUID(b []byte) GUID {
	var g GUID
	g.Data1 = binary.LittleEndian.Uint32(b)
	g.Data2 = binary.LittleEndian.Uint16(b[4:])
	g.Data3 = binary.LittleEndian.Uint16(b[6:])
	copy(g.Data4[:], b[8:16])
	return g
}

// Record is one event record of a trace.
type Record struct {
	Kind HeaderKind
	// Group and Opcode are the hook id of kernel records (Kind.Kernel()),
	// and of EVENT_TRACE_HEADER records their class's type in Opcode.
	Group, Opcode uint8
	// Provider is the event's provider or class GUID (EVENT_HEADER and
	// EVENT_TRACE_HEADER records); zero for kernel records.
	Provider GUID
	// ThreadID and ProcessID are NoID when the header has none.
	ThreadID, ProcessID uint32
	// TimeStamp is the header's raw time stamp (QPC, system time or CPU
	// cycles, see LogfileHeader.ClockType), as StackWalk events name it.
	TimeStamp int64
	// CPU is the processor of the buffer that held the record.
	CPU uint16
	// PtrSize is the logging kernel's or process's pointer size: 4 or 8.
	PtrSize int
	// Version is the event's version: of kernel records the low byte of
	// the header's version field, of EVENT_HEADER records the descriptor's,
	// of EVENT_TRACE_HEADER records the class version.
	Version uint8
	// Payload is the event data after the header (and its extensions). It
	// aliases the buffer: copy it to keep it past the callback.
	Payload []byte

	off, size int // in the buffer's events
}

// HookID returns Group<<8 | Opcode.
func (r *Record) HookID() uint16 { return uint16(r.Group)<<8 | uint16(r.Opcode) }

// LogfileHeader is the TRACE_LOGFILE_HEADER that the first record of a
// trace carries.
type LogfileHeader struct {
	BufferSize         uint32
	Version            uint32 // major, minor, sub, subminor (low byte first)
	OSBuild            uint32 // ProviderVersion: the Windows build number
	NumberOfProcessors uint32
	EndTime            int64 // FILETIME
	LogFileMode        uint32
	BuffersWritten     uint32
	PointerSize        uint32
	EventsLost         uint32
	CPUSpeedMHz        uint32
	BootTime           int64  // FILETIME
	PerfFreq           uint64 // the raw time stamps' frequency (QPC), per second
	StartTime          int64  // FILETIME
	ClockType          uint32 // ReservedFlags: 1 QPC, 2 system time, 3 CPU cycles
	BuffersLost        uint32
	LoggerName         string
	LogFileName        string
}

// logfileHeaderFixed returns the size of TRACE_LOGFILE_HEADER before the
// logger and file names, for a pointer size.
func logfileHeaderFixed(ptrSize int) int {
	// 56 bytes of fixed fields, the LoggerName and LogFileName pointers, a
	// TIME_ZONE_INFORMATION (172 bytes), padding to 8, then BootTime,
	// PerfFreq, StartTime, ReservedFlags and BuffersLost.
	n := 56 + 2*ptrSize + 172
	n = (n + 7) &^ 7
	return n + 8 + 8 + 8 + 4 + 4
}

// parseLogfileHeader decodes the payload of a trace's first record.
func parseLogfileHeader(p []byte) (LogfileHeader, error) {
	if len(p) < 56 {
		return LogfileHeader{}, fmt.Errorf("logfile header: %d bytes: %w", len(p), ErrCorrupt)
	}
	le := binary.LittleEndian
	h := LogfileHeader{
		BufferSize:         le.Uint32(p[0:]),
		Version:            le.Uint32(p[4:]),
		OSBuild:            le.Uint32(p[8:]),
		NumberOfProcessors: le.Uint32(p[12:]),
		EndTime:            int64(le.Uint64(p[16:])),
		LogFileMode:        le.Uint32(p[32:]),
		BuffersWritten:     le.Uint32(p[36:]),
		PointerSize:        le.Uint32(p[44:]),
		EventsLost:         le.Uint32(p[48:]),
		CPUSpeedMHz:        le.Uint32(p[52:]),
	}
	if h.PointerSize != 4 && h.PointerSize != 8 {
		return h, fmt.Errorf("logfile header: pointer size %d: %w", h.PointerSize, ErrCorrupt)
	}
	fixed := logfileHeaderFixed(int(h.PointerSize))
	if len(p) < fixed {
		return h, fmt.Errorf("logfile header: %d bytes, %d needed: %w", len(p), fixed, ErrCorrupt)
	}
	q := fixed - 32
	h.BootTime = int64(le.Uint64(p[q:]))
	h.PerfFreq = le.Uint64(p[q+8:])
	h.StartTime = int64(le.Uint64(p[q+16:]))
	h.ClockType = le.Uint32(p[q+24:])
	h.BuffersLost = le.Uint32(p[q+28:])
	rest := p[fixed:]
	h.LoggerName, rest = utf16z(rest)
	h.LogFileName, _ = utf16z(rest)
	return h, nil
}

// utf16z reads a NUL-terminated UTF-16LE string and returns what follows.
func utf16z(b []byte) (string, []byte) {
	var u []uint16
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			return string(utf16.Decode(u)), b[i+2:]
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u)), nil
}

// BufferInfo describes one buffer of the file.
type BufferInfo struct {
	Offset     int64  // in the file
	Size       uint32 // on disk
	Filled     uint32 // bytes of events and header, decompressed
	CPU        uint16
	Flags      uint16
	Type       uint16
	Sequence   int64
	Compressed bool
}

// File is an open trace.
type File struct {
	r       io.ReaderAt
	size    int64
	Header  LogfileHeader
	Buffers []BufferInfo
	// Truncated is set when the file ends inside a buffer (a trace copied
	// while it was being written): that buffer is not read.
	Truncated bool
	// Progress, when set, is called after each buffer a pass over the
	// trace reads (Records, SortedRecords, Info), with the buffers read and
	// their total.
	Progress func(done, total int)
}

// ErrNotETL is wrapped by Open's error for a file that is not a trace.
var ErrNotETL = errors.New("not an .etl trace file")

// Open reads the buffer headers and the logfile header of the trace in r,
// size bytes long.
func Open(r io.ReaderAt, size int64) (*File, error) {
	f := &File{r: r, size: size}
	var hdr [BufferHeaderSize]byte
	for off := int64(0); off < size; {
		if size-off < BufferHeaderSize {
			f.Truncated = true
			break
		}
		if _, err := r.ReadAt(hdr[:], off); err != nil {
			return nil, fmt.Errorf("reading the buffer at %d: %w", off, err)
		}
		b := parseBufferHeader(hdr[:], off)
		if b.Size < BufferHeaderSize || b.Size > maxBufferSize || b.Filled > maxBufferSize {
			if off == 0 {
				return nil, fmt.Errorf("first buffer size %d: %w", b.Size, ErrNotETL)
			}
			return f, fmt.Errorf("buffer at %d: size %d, filled %d: %w", off, b.Size, b.Filled, ErrCorrupt)
		}
		if off+int64(b.Size) > size {
			f.Truncated = true
			break
		}
		f.Buffers = append(f.Buffers, b)
		off += int64(b.Size)
	}
	if len(f.Buffers) == 0 {
		return nil, fmt.Errorf("no whole buffer: %w", ErrNotETL)
	}
	data, err := f.bufferData(0, nil)
	if err != nil {
		return nil, err
	}
	var first *Record
	err = walkBuffer(data, f.Buffers[0], func(r *Record) error {
		if first == nil {
			c := *r
			first = &c
		}
		return errStop
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, err
	}
	if first == nil || !first.Kind.Kernel() || first.HookID() != 0 {
		return nil, fmt.Errorf("the first record is not a logfile header: %w", ErrNotETL)
	}
	if f.Header, err = parseLogfileHeader(first.Payload); err != nil {
		return nil, err
	}
	return f, nil
}

var errStop = errors.New("stop")

func parseBufferHeader(h []byte, off int64) BufferInfo {
	le := binary.LittleEndian
	b := BufferInfo{
		Offset:   off,
		Size:     le.Uint32(h[0:]),
		Sequence: int64(le.Uint64(h[0x18:])),
		CPU:      le.Uint16(h[0x28:]),
		Filled:   le.Uint32(h[0x30:]),
		Flags:    le.Uint16(h[0x34:]),
		Type:     le.Uint16(h[0x36:]),
	}
	if b.Flags&BufferFlagProcIndex == 0 {
		b.CPU &= 0xff // ProcessorNumber, then an alignment byte
	}
	b.Compressed = b.Flags&BufferFlagCompressed != 0
	return b
}

// bufferData returns buffer i's events (after its header), decompressed,
// reusing buf.
func (f *File) bufferData(i int, buf []byte) ([]byte, error) {
	b := f.Buffers[i]
	n := int(b.Size) - BufferHeaderSize
	raw := slices.Grow(buf[:0], n)[:n]
	if _, err := f.r.ReadAt(raw, b.Offset+BufferHeaderSize); err != nil {
		return nil, fmt.Errorf("reading buffer %d: %w", i, err)
	}
	if !b.Compressed {
		return raw[:min(n, max(int(b.Filled)-BufferHeaderSize, 0))], nil
	}
	want := int(b.Filled) - BufferHeaderSize
	if want < 0 {
		return nil, fmt.Errorf("buffer %d: filled %d: %w", i, b.Filled, ErrCorrupt)
	}
	out, err := DecompressXpress(make([]byte, 0, want), raw, want)
	if err != nil {
		return nil, fmt.Errorf("buffer %d at %d: %w", i, b.Offset, err)
	}
	return out, nil
}

// ErrUnknownHeader is wrapped by the error of a record whose marker names
// no header kind this reader knows.
var ErrUnknownHeader = errors.New("unknown event header kind")

// minHeaderSize returns the size of a kind's header before its payload
// and extensions.
func minHeaderSize(k HeaderKind) int {
	switch k {
	case KindSystem32, KindSystem64:
		return 0x20
	case KindCompact32, KindCompact64:
		return 0x18
	case KindPerfinfo32, KindPerfinfo64:
		return 0x10
	case KindEventHeader32, KindEventHeader64:
		return 0x50
	case KindFullHeader32, KindFullHeader64:
		return 0x30
	case KindInstance32, KindInstance64:
		return 0x48
	case KindMessage:
		return 0x08
	}
	return 0x08 // timed, error and WNODE headers: size and marker
}

// eventHeaderFlagExtendedInfo is EVENT_HEADER_FLAG_EXTENDED_INFO.
const eventHeaderFlagExtendedInfo = 0x0001

// walkBuffer calls fn for every record of a buffer's events, in order. It
// stops at the padding (0xFFFFFFFF) or the end of the filled bytes, and
// returns an error for a record that does not fit or has an unknown
// header kind.
func walkBuffer(data []byte, b BufferInfo, fn func(*Record) error) error {
	le := binary.LittleEndian
	var r Record
	for off := 0; off+4 <= len(data); {
		m := le.Uint32(data[off:])
		if m == 0xffffffff {
			return nil
		}
		var size int
		switch flags := m >> 24; {
		case flags&0xc0 == 0xc0:
			r.Kind = HeaderKind(m >> 16)
		case flags == 0x90 || flags&0x80 != 0 && flags&0x40 == 0:
			r.Kind = KindMessage
		default:
			return fmt.Errorf("record at %d: marker %#08x: %w", off, m, ErrUnknownHeader)
		}
		hs := minHeaderSize(r.Kind)
		switch r.Kind {
		case KindSystem32, KindSystem64, KindCompact32, KindCompact64, KindPerfinfo32, KindPerfinfo64:
			if off+8 > len(data) {
				return fmt.Errorf("record at %d cut short: %w", off, ErrCorrupt)
			}
			size = int(le.Uint16(data[off+4:]))
			// Extension words: the high bit of the version field, and a
			// count in bits 8-10.
			if m&0x8000 != 0 {
				hs += 8
			}
			hs += 8 * int(m>>8&7)
		case KindFullHeader32, KindFullHeader64, KindInstance32, KindInstance64, KindEventHeader32, KindEventHeader64,
			KindTimed, KindError, KindWnode, KindMessage:
			size = int(m & 0xffff)
		default:
			return fmt.Errorf("record at %d: header kind %#x: %w", off, uint8(r.Kind), ErrUnknownHeader)
		}
		if size < hs || off+size > len(data) {
			return fmt.Errorf("record at %d: size %d, header %d, %d bytes left: %w", off, size, hs, len(data)-off, ErrCorrupt)
		}
		rec := data[off : off+size]
		r.CPU = b.CPU
		r.PtrSize = 4
		if r.Kind.is64() {
			r.PtrSize = 8
		}
		r.Group, r.Opcode, r.Provider, r.Version = 0, 0, GUID{}, 0
		r.ThreadID, r.ProcessID, r.TimeStamp = NoID, NoID, 0
		switch r.Kind {
		case KindSystem32, KindSystem64, KindCompact32, KindCompact64:
			r.Opcode, r.Group, r.Version = rec[6], rec[7], rec[0]
			r.ThreadID, r.ProcessID = le.Uint32(rec[8:]), le.Uint32(rec[12:])
			r.TimeStamp = int64(le.Uint64(rec[16:]))
		case KindPerfinfo32, KindPerfinfo64:
			r.Opcode, r.Group, r.Version = rec[6], rec[7], rec[0]
			r.TimeStamp = int64(le.Uint64(rec[8:]))
		case KindFullHeader32, KindFullHeader64, KindInstance32, KindInstance64:
			r.Opcode, r.Version = rec[4], rec[6] // Class.Type, Class.Version
			r.ThreadID, r.ProcessID = le.Uint32(rec[8:]), le.Uint32(rec[12:])
			r.TimeStamp = int64(le.Uint64(rec[16:]))
			r.Provider = readGUID(rec[24:])
		case KindEventHeader32, KindEventHeader64:
			r.ThreadID, r.ProcessID = le.Uint32(rec[8:]), le.Uint32(rec[12:])
			r.TimeStamp = int64(le.Uint64(rec[16:]))
			r.Provider = readGUID(rec[24:])
			r.Opcode, r.Version = rec[45], rec[42]
			if le.Uint16(rec[4:])&eventHeaderFlagExtendedInfo != 0 {
				// Extended data items: u16 reserved, u16 type (0x8000:
				// another item follows), u16 reserved, u16 data size.
				for {
					if hs+8 > size {
						return fmt.Errorf("record at %d: extended data cut short: %w", off, ErrCorrupt)
					}
					typ := le.Uint16(rec[hs+2:])
					n := int(le.Uint16(rec[hs+6:]))
					hs += 8 + n
					hs = (hs + 7) &^ 7
					if hs > size {
						return fmt.Errorf("record at %d: extended data cut short: %w", off, ErrCorrupt)
					}
					if typ&0x8000 == 0 {
						break
					}
				}
			}
		}
		r.Payload = rec[hs:size]
		r.off, r.size = off, size
		if err := fn(&r); err != nil {
			return err
		}
		off += (size + 7) &^ 7
	}
	return nil
}

// Stats counts what reading a trace met besides records.
type Stats struct {
	Buffers         int // buffers read
	Compressed      int // of them, compressed
	BuffersBad      int // buffers whose events could not be read whole
	EventsLostFlags int // buffers flagged as having lost events
	BuffersLostFlag int // buffers flagged as following lost buffers
	FirstError      error
}

// Records calls fn for every record of the trace, buffer by buffer in file
// order, each buffer's records in order. A buffer that cannot be read
// whole is counted in Stats and the rest of the trace still read; an error
// from fn stops it.
func (f *File) Records(fn func(*Record) error) (Stats, error) {
	var st Stats
	var buf []byte
	for i, b := range f.Buffers {
		if f.Progress != nil {
			f.Progress(i, len(f.Buffers))
		}
		data, err := f.bufferData(i, buf)
		if err == nil {
			buf = data[:0]
			st.Buffers++
			if b.Compressed {
				st.Compressed++
			}
			err = walkBuffer(data, b, fn)
		}
		if b.Flags&BufferFlagEventsLost != 0 {
			st.EventsLostFlags++
		}
		if b.Flags&BufferFlagBufferLost != 0 {
			st.BuffersLostFlag++
		}
		if err != nil {
			if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrUnknownHeader) {
				st.BuffersBad++
				if st.FirstError == nil {
					st.FirstError = fmt.Errorf("buffer %d: %w", i, err)
				}
				continue
			}
			return st, err
		}
	}
	return st, nil
}

// SortedRecords calls fn for every record of the trace in time-stamp
// order (records of equal stamps in file order), merging the buffers of
// all processors, which a trace file holds in the order they were flushed.
// It holds every buffer's events in memory.
func (f *File) SortedRecords(fn func(*Record) error) (Stats, error) {
	s := f.Sort()
	return s.Stats, s.Each(fn)
}

// Sorted is a trace's records in time-stamp order, its buffers read and
// decompressed once, to be gone through as often as needed.
type Sorted struct {
	f     *File
	datas [][]byte
	refs  []sortedRef
	// Stats counts what reading the buffers met.
	Stats Stats
}

type sortedRef struct {
	ts        int64
	buf       int32
	off, size int32
}

// Sort reads every buffer of the trace into memory and orders the records
// by time stamp (records of equal stamps in file order). A buffer that
// cannot be read whole is counted in Stats.
func (f *File) Sort() *Sorted {
	s := &Sorted{f: f, datas: make([][]byte, len(f.Buffers))}
	st := &s.Stats
	for i, b := range f.Buffers {
		if f.Progress != nil {
			f.Progress(i, len(f.Buffers))
		}
		data, err := f.bufferData(i, nil)
		if err == nil {
			st.Buffers++
			if b.Compressed {
				st.Compressed++
			}
			s.datas[i] = data
			err = walkBuffer(data, b, func(r *Record) error {
				s.refs = append(s.refs, sortedRef{ts: r.TimeStamp, buf: int32(i), off: int32(r.off), size: int32(r.size)})
				return nil
			})
		}
		if b.Flags&BufferFlagEventsLost != 0 {
			st.EventsLostFlags++
		}
		if b.Flags&BufferFlagBufferLost != 0 {
			st.BuffersLostFlag++
		}
		if err != nil {
			st.BuffersBad++
			if st.FirstError == nil {
				st.FirstError = fmt.Errorf("buffer %d: %w", i, err)
			}
		}
	}
	slices.SortStableFunc(s.refs, func(a, b sortedRef) int { return cmp.Compare(a.ts, b.ts) })
	return s
}

// Each calls fn for every record in time-stamp order; an error from fn
// stops it.
func (s *Sorted) Each(fn func(*Record) error) error {
	for _, rf := range s.refs {
		// Read the one record again from its place.
		data := s.datas[rf.buf][rf.off : rf.off+rf.size]
		var stop error
		err := walkBuffer(data, s.f.Buffers[rf.buf], func(r *Record) error {
			stop = fn(r)
			return errStop
		})
		if stop != nil {
			return stop
		}
		if err != nil && !errors.Is(err, errStop) {
			return err
		}
	}
	return nil
}
