package etw

import (
	"fmt"
	"strings"

	"github.com/kmemprof/kmemprof/etw/etl"
)

// GUID is a Windows GUID with the field layout of windows.GUID and the C
// GUID structure, so that code on Windows can convert it directly:
// windows.GUID(etw.PoolTraceGUID). It is the trace reader's type, so that
// records of .etl files name their providers in it.
type GUID = etl.GUID

// Event classes (the ProviderId of their EVENT_RECORDs) of the kernel
// ("MSNT_SystemTrace") events kmemprof uses. They are values, not settings:
// never assign to them.
var (
	// PoolTraceGUID is the PoolTrace class: pool allocations and frees
	// (opcodes OpPoolAlloc to OpPoolFreeSession), enabled by the PERF_POOL
	// group mask.
	PoolTraceGUID = GUID{Data1: 0x0268a8b6, Data2: 0x74fd, Data3: 0x4302, Data4: [8]byte{0x9d, 0xd0, 0x6e, 0x8f, 0x17, 0x95, 0xc0, 0xcf}}
	// StackWalkGUID is the StackWalk class: the kernel stack of an event,
	// logged right after it (opcode OpStackWalk).
	StackWalkGUID = GUID{Data1: 0xdef2fe46, Data2: 0x7bd6, Data3: 0x4b80, Data4: [8]byte{0xbd, 0x94, 0xf5, 0x7f, 0xe2, 0x0d, 0x0c, 0xe3}}
	// ImageGUID is the Image class: image (driver, DLL) loads, unloads and
	// rundowns, enabled by EVENT_TRACE_FLAG_IMAGE_LOAD.
	ImageGUID = GUID{Data1: 0x2cb15d1d, Data2: 0x5fc1, Data3: 0x11d2, Data4: [8]byte{0xab, 0xe1, 0x00, 0xa0, 0xc9, 0x11, 0xf5, 0x18}}
	// ProcessGUID is the Process class (process start, end and rundown),
	// enabled by EVENT_TRACE_FLAG_PROCESS.
	ProcessGUID = GUID{Data1: 0x3d6fa8d0, Data2: 0xfe05, Data3: 0x11d0, Data4: [8]byte{0x9d, 0xda, 0x00, 0xc0, 0x4f, 0xd7, 0xba, 0x7c}}
)

// Opcodes (EVENT_DESCRIPTOR.Opcode, the "event type" of the MOF classes).
const (
	// PoolTrace: an allocation or free in system pool, and the same in
	// session pool (the payload then ends with the session id).
	OpPoolAlloc        uint8 = 0x20
	OpPoolAllocSession uint8 = 0x21
	OpPoolFree         uint8 = 0x22
	OpPoolFreeSession  uint8 = 0x23

	// OpStackWalk is StackWalk_Event ("Stack"), the only StackWalk opcode
	// with a frame list.
	OpStackWalk uint8 = 32

	// Image_Load event types: a load, an unload, and the rundown of the
	// images already loaded when the session starts (DCStart) and when it
	// ends (DCEnd).
	OpImageLoad    uint8 = 10
	OpImageUnload  uint8 = 2
	OpImageDCStart uint8 = 3
	OpImageDCEnd   uint8 = 4
)

// Session settings for pool events that the Windows session code passes to
// TraceSetInformation.
const (
	// PerfPoolGroupMask is PERF_POOL: the top three bits index
	// PERFINFO_GROUPMASK.Masks (here 1), the rest is the bit to set there
	// (0x40). Pool events have no classic EnableFlags bit.
	PerfPoolGroupMask = 0x20000040

	// TraceSystemTraceEnableFlagsInfo is the TRACE_INFO_CLASS that sets a
	// system logger's PERFINFO_GROUPMASK.
	TraceSystemTraceEnableFlagsInfo = 4

	// TraceStackTracingInfo is the TRACE_INFO_CLASS that takes the
	// CLASSIC_EVENT_ID array of the events to walk kernel stacks for.
	TraceStackTracingInfo = 3
)

// PoolTypeBigPool is the bit the kernel sets in a PoolTrace event's
// PoolType for big pool allocations (ETW_POOLTRACE_BIGPOOL_MASK in ntwmi.h,
// as phnt transcribes it); it is not part of the POOL_TYPE value.
const PoolTypeBigPool = 0x10000000

// poolTypeNames are the values of the POOL_TYPE enumeration (wdm.h) under
// the names pprof labels show, without the "Pool" infix: NonPagedPoolNx is
// "NonPagedNx".
var poolTypeNames = map[uint32]string{
	0:   "NonPaged", // also NonPagedPoolExecute
	1:   "Paged",
	2:   "NonPagedMustSucceed",
	3:   "DontUseThisType",
	4:   "NonPagedCacheAligned",
	5:   "PagedCacheAligned",
	6:   "NonPagedCacheAlignedMustS",
	32:  "NonPagedSession",
	33:  "PagedSession",
	34:  "NonPagedMustSucceedSession",
	35:  "DontUseThisTypeSession",
	36:  "NonPagedCacheAlignedSession",
	37:  "PagedCacheAlignedSession",
	38:  "NonPagedCacheAlignedMustSSession",
	512: "NonPagedNx",
	516: "NonPagedNxCacheAligned",
	544: "NonPagedSessionNx",
}

// PoolTypeName returns the name of a POOL_TYPE value as it appears in the
// "pool" label: "NonPaged" (0), "Paged" (1), "NonPagedSession" (32),
// "PagedSession" (33), "NonPagedNx" (512), "NonPagedSessionNx" (544), the
// other values the POOL_TYPE enumeration of wdm.h defines likewise, and
// "PoolType(0xN)" for anything else.
func PoolTypeName(t uint32) string {
	if n, ok := poolTypeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("PoolType(%#x)", t)
}

// TagString returns a pool tag as pooltag.txt and poolmon write it: the four
// bytes in memory order (the low byte of the little-endian value first), so
// that the bytes 'N','t','f','x' read "Ntfx". Trailing spaces, which pad
// short tags, are kept. Bytes outside printable ASCII, and the backslash,
// are written as \xNN so that TagValue can read every string back.
func TagString(tag uint32) string {
	var b strings.Builder
	b.Grow(4)
	for i := range 4 {
		c := byte(tag >> (8 * i))
		if c < 0x20 || c > 0x7e || c == '\\' {
			fmt.Fprintf(&b, `\x%02x`, c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// TagValue returns the 32-bit value of a pool tag written as TagString
// writes it ("Ntfx", `Ab\x00\x01`). Tags shorter than four bytes are padded
// with spaces, as Windows pads them ("Cc" is "Cc  "); bytes past the fourth
// are ignored. It never fails: use ParseTag or CheckTags to validate what a
// user typed.
func TagValue(tag string) uint32 {
	b, _ := unescapeTag(tag)
	for len(b) < 4 {
		b = append(b, ' ')
	}
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// ParseTag is TagValue for input that must be valid: it returns an error
// wrapping ErrBadTag for an empty tag, a tag longer than four bytes, or a
// malformed \xNN escape.
func ParseTag(tag string) (uint32, error) {
	b, ok := unescapeTag(tag)
	switch {
	case !ok:
		return 0, fmt.Errorf("parsing pool tag %q: bad \\x escape: %w", tag, ErrBadTag)
	case len(b) == 0:
		return 0, fmt.Errorf("parsing pool tag %q: empty: %w", tag, ErrBadTag)
	case len(b) > 4:
		return 0, fmt.Errorf("parsing pool tag %q: longer than 4 bytes: %w", tag, ErrBadTag)
	}
	return TagValue(tag), nil
}

// MaxTags is how many pool tags the kernel's tag filter takes, and so how
// many a capture may filter by.
const MaxTags = 4

// CheckTags reports whether tags is a usable tag filter: at most MaxTags
// tags, each valid for ParseTag. The error wraps ErrBadTag.
func CheckTags(tags []string) error {
	if len(tags) > MaxTags {
		return fmt.Errorf("filtering by %d pool tags: at most %d are allowed: %w", len(tags), MaxTags, ErrBadTag)
	}
	for _, t := range tags {
		if _, err := ParseTag(t); err != nil {
			return err
		}
	}
	return nil
}

// unescapeTag turns \xNN escapes into bytes. A malformed escape is kept as
// written and reported with ok=false.
func unescapeTag(s string) (b []byte, ok bool) {
	b = make([]byte, 0, 4)
	ok = true
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			if v, good := hexByte(s[i+2], s[i+3]); good {
				b = append(b, v)
				i += 3
				continue
			}
		}
		if s[i] == '\\' {
			ok = false
		}
		b = append(b, s[i])
	}
	return b, ok
}

func hexByte(hi, lo byte) (byte, bool) {
	h, ok1 := hexDigit(hi)
	l, ok2 := hexDigit(lo)
	return h<<4 | l, ok1 && ok2
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// LostEventGUID is the RT_LostEvent class: a real-time session's notices
// of what it could not deliver (opcodes OpRTLostEvent, OpRTLostBuffer,
// OpRTLostFile).
var LostEventGUID = GUID{Data1: 0x6a399ae0, Data2: 0x4bc6, Data3: 0x4de9, Data4: [8]byte{0x87, 0x0b, 0x36, 0x57, 0xf8, 0x94, 0x7e, 0x7e}}

// RT_LostEvent opcodes.
const (
	OpRTLostEvent  uint8 = 32 // events lost
	OpRTLostBuffer uint8 = 33 // a buffer lost
	OpRTLostFile   uint8 = 34 // the backing file lost
)

// PoolTrace opcodes past the allocations and frees: pool page additions,
// big pool pages and the pool snapshot rundown (0x24 to 0x2F). Nothing
// kmemprof matches.
const (
	opPoolOtherFirst uint8 = 0x24
	opPoolOtherLast  uint8 = 0x2f
)

// StackWalk opcodes of cached stacks: key creation, deletion, rundown and
// the kernel and user stack key events (34 to 38); they carry no frame
// list.
const (
	opStackKeyFirst uint8 = 34
	opStackKeyLast  uint8 = 38
)
