package etw

import (
	"encoding/binary"
	"fmt"
	"unicode/utf16"
)

// The layouts below are those of the kernel's MOF classes ("MSNT_SystemTrace"
// event classes). Every field is little-endian; PTR and SIZE_T fields are as
// wide as the logging kernel's pointers (EVENT_HEADER_FLAG_32_BIT_HEADER or
// EVENT_HEADER_FLAG_64_BIT_HEADER), which is why every decoder takes ptrSize.
// A payload longer than its layout is accepted and the excess reported in
// Extra: newer Windows versions append fields to kernel events.

// PoolEvent is one PoolTrace event: an allocation or a free in system or
// session pool.
type PoolEvent struct {
	Alloc     bool   // PoolAlloc or PoolAllocSession; false for the frees
	Session   bool   // a session-pool variant (PoolAllocSession, PoolFreeSession)
	Big       bool   // a big pool allocation (the BIGPOOL bit of the logged PoolType)
	PoolType  uint32 // POOL_TYPE, without the BIGPOOL bit; see PoolTypeName
	Tag       uint32 // pool tag; see TagString
	Size      uint64 // NumberOfBytes: the size asked for (see DecodePool for frees)
	Entry     uint64 // the address of the allocation
	SessionID uint32 // the session of a session-pool event; 0 otherwise
	Extra     int    // payload bytes past the documented layout (newer Windows)
}

// poolPayloadSize returns the documented size of a PoolTrace payload.
func poolPayloadSize(session bool, ptrSize int) int {
	n := 4 + 4 + 2*ptrSize
	if session {
		n += 4
	}
	return n
}

// poolOpName names a PoolTrace opcode for error messages.
func poolOpName(op uint8) string {
	switch op {
	case OpPoolAlloc:
		return "PoolAlloc"
	case OpPoolAllocSession:
		return "PoolAllocSession"
	case OpPoolFree:
		return "PoolFree"
	case OpPoolFreeSession:
		return "PoolFreeSession"
	}
	return fmt.Sprintf("PoolTrace opcode %#x", op)
}

// DecodePool decodes the payload of a PoolTrace event (opcodes OpPoolAlloc,
// OpPoolAllocSession, OpPoolFree, OpPoolFreeSession) logged by a kernel with
// ptrSize-byte pointers. The layout, the same for all four opcodes, is
//
//	u32    PoolType
//	u32    Tag
//	SIZE_T NumberOfBytes
//	PTR    Entry
//	u32    SessionId       (session variants only)
//
// that is 24 bytes on 64-bit Windows (28 for the session variants) and 16 on
// 32-bit Windows (20). Frees carry the same fields as allocations: the MOF
// class that describes opcodes 0x20 to 0x23 is shared (as installed
// MSNT_SystemTrace schemas show through TDH: Type, Tag, NumberOfBytes, Entry,
// and SessionId for the session variants). A free's NumberOfBytes is the
// kernel's view and not needed: the Matcher takes the size from the
// allocation.
//
// It returns an error wrapping ErrPointerSize for a ptrSize other than 4 or
// 8, ErrUnknownOpcode for another opcode, and ErrTruncated for a payload
// shorter than the layout. Longer payloads decode, with the excess in Extra.
func DecodePool(opcode uint8, payload []byte, ptrSize int) (PoolEvent, error) {
	name := poolOpName(opcode)
	if ptrSize != 4 && ptrSize != 8 {
		return PoolEvent{}, fmt.Errorf("decoding %s: pointer size %d: %w", name, ptrSize, ErrPointerSize)
	}
	var ev PoolEvent
	switch opcode {
	case OpPoolAlloc:
		ev.Alloc = true
	case OpPoolAllocSession:
		ev.Alloc, ev.Session = true, true
	case OpPoolFree:
	case OpPoolFreeSession:
		ev.Session = true
	default:
		return PoolEvent{}, fmt.Errorf("decoding %s: %w", name, ErrUnknownOpcode)
	}
	need := poolPayloadSize(ev.Session, ptrSize)
	if len(payload) < need {
		return PoolEvent{}, fmt.Errorf("decoding %s: %d-byte payload, %d needed: %w", name, len(payload), need, ErrTruncated)
	}
	ev.PoolType = binary.LittleEndian.Uint32(payload[0:])
	ev.Big = ev.PoolType&PoolTypeBigPool != 0
	ev.PoolType &^= PoolTypeBigPool
	ev.Tag = binary.LittleEndian.Uint32(payload[4:])
	ev.Size = readPtr(payload[8:], ptrSize)
	ev.Entry = readPtr(payload[8+ptrSize:], ptrSize)
	if ev.Session {
		ev.SessionID = binary.LittleEndian.Uint32(payload[8+2*ptrSize:])
	}
	ev.Extra = len(payload) - need
	return ev, nil
}

// MaxStackFrames is the most frames a StackWalk event holds (Stack1 to
// Stack192); a kernel stack deeper than that is cut at its root end.
const MaxStackFrames = 192

// stackHeaderSize is the size of the StackWalk fields before the frames.
const stackHeaderSize = 8 + 4 + 4

// StackEvent is a StackWalk_Event: the kernel stack of the event that was
// logged just before it on the same thread.
type StackEvent struct {
	// EventTimeStamp is the time stamp of the event this stack belongs to,
	// as its EVENT_HEADER carried it before any conversion: a raw
	// (QPC, system time or cycle counter) value.
	EventTimeStamp uint64
	ProcessID      uint32 // StackProcess: the process of that event
	ThreadID       uint32 // StackThread: the thread of that event
	// Frames are the return addresses, innermost (leaf) first: Stack1 is
	// the instruction pointer in the function that logged the event, each
	// further frame is its caller. Empty when the kernel logged no frame.
	Frames []uint64
}

// DecodeStack decodes the payload of a StackWalk event (opcode
// OpStackWalk) logged by a kernel with ptrSize-byte pointers. The layout is
//
//	u64 EventTimeStamp
//	u32 StackProcess
//	u32 StackThread
//	PTR Stack1 ... StackN      (N <= 192, given by the payload size)
//
// Frames come leaf first, as the kernel walked them (consumers such as
// PerfView's TraceLog build the call chain from the last address, the root,
// towards Stack1). A payload with no frame decodes to an empty stack.
//
// It returns an error wrapping ErrPointerSize for a ptrSize other than 4 or
// 8, ErrTruncated for a payload shorter than 16 bytes, and ErrMalformed when
// the frames are not a whole number of pointers or number more than
// MaxStackFrames.
func DecodeStack(payload []byte, ptrSize int) (StackEvent, error) {
	if ptrSize != 4 && ptrSize != 8 {
		return StackEvent{}, fmt.Errorf("decoding StackWalk: pointer size %d: %w", ptrSize, ErrPointerSize)
	}
	if len(payload) < stackHeaderSize {
		return StackEvent{}, fmt.Errorf("decoding StackWalk: %d-byte payload, %d needed: %w", len(payload), stackHeaderSize, ErrTruncated)
	}
	rest := len(payload) - stackHeaderSize
	if rest%ptrSize != 0 {
		return StackEvent{}, fmt.Errorf("decoding StackWalk: %d bytes of frames is not a multiple of the %d-byte pointer: %w", rest, ptrSize, ErrMalformed)
	}
	n := rest / ptrSize
	if n > MaxStackFrames {
		return StackEvent{}, fmt.Errorf("decoding StackWalk: %d frames, at most %d: %w", n, MaxStackFrames, ErrMalformed)
	}
	ev := StackEvent{
		EventTimeStamp: binary.LittleEndian.Uint64(payload[0:]),
		ProcessID:      binary.LittleEndian.Uint32(payload[8:]),
		ThreadID:       binary.LittleEndian.Uint32(payload[12:]),
		Frames:         make([]uint64, n),
	}
	for i := range ev.Frames {
		ev.Frames[i] = readPtr(payload[stackHeaderSize+i*ptrSize:], ptrSize)
	}
	return ev, nil
}

// ImageOp says what an Image event reports.
type ImageOp uint8

const (
	// ImageLoad: the image was just loaded (opcode OpImageLoad).
	ImageLoad ImageOp = iota + 1
	// ImageUnload: the image is being unloaded (OpImageUnload).
	ImageUnload
	// ImageRundown: the image was already loaded when the session started
	// (OpImageDCStart) or still is when it ends (OpImageDCEnd).
	ImageRundown
)

// String returns "load", "unload" or "rundown".
func (o ImageOp) String() string {
	switch o {
	case ImageLoad:
		return "load"
	case ImageUnload:
		return "unload"
	case ImageRundown:
		return "rundown"
	}
	return fmt.Sprintf("ImageOp(%d)", uint8(o))
}

// ImageEvent is an Image_Load event: where an image (a driver, the kernel,
// or a user-mode DLL or EXE) is or was mapped.
type ImageEvent struct {
	Op             ImageOp
	Base           uint64 // ImageBase
	Size           uint64 // ImageSize
	ProcessID      uint32 // the process it is mapped into; 0 for kernel images
	Checksum       uint32 // ImageChecksum from the PE header
	TimeDateStamp  uint32 // TimeDateStamp from the PE header
	SignatureLevel uint8
	SignatureType  uint8
	DefaultBase    uint64 // the PE header's preferred base
	// FileName is the image's path as the kernel knows it, e.g.
	// `\SystemRoot\system32\drivers\ndis.sys`.
	FileName string
	// Extra counts payload bytes the layout does not explain: those after
	// FileName's terminating NUL, or a dangling odd byte.
	Extra int
}

// imageFixedSize returns the size of the Image_Load fields before FileName.
func imageFixedSize(ptrSize int) int {
	// ImageBase, ImageSize, DefaultBase; ProcessId, ImageChecksum,
	// TimeDateStamp, the signature bytes with Reserved0, Reserved1..4.
	return 3*ptrSize + 4*4 + 4*4
}

// DecodeImage decodes the payload of an Image event (opcodes OpImageLoad,
// OpImageUnload, OpImageDCStart, OpImageDCEnd; class Image_Load, event
// version 2 and later) logged by a kernel with ptrSize-byte pointers. The
// layout is
//
//	PTR ImageBase
//	PTR ImageSize
//	u32 ProcessId
//	u32 ImageChecksum
//	u32 TimeDateStamp
//	u8  SignatureLevel      (Reserved0, a u32, in older documentation)
//	u8  SignatureType
//	u16 Reserved0
//	PTR DefaultBase
//	u32 Reserved1, Reserved2, Reserved3, Reserved4
//	    FileName            (UTF-16LE, NUL-terminated)
//
// that is 56 bytes before FileName on 64-bit Windows and 44 on 32-bit
// Windows. FileName is read up to its NUL or, failing one, to the end of the
// payload; a dangling odd byte and anything after the NUL are counted in
// Extra. The XP-era version 1 layout (no checksum or reserved fields) is
// not decoded.
//
// It returns an error wrapping ErrPointerSize for a ptrSize other than 4 or
// 8, ErrUnknownOpcode for another opcode, and ErrTruncated for a payload that
// ends before FileName.
func DecodeImage(opcode uint8, payload []byte, ptrSize int) (ImageEvent, error) {
	if ptrSize != 4 && ptrSize != 8 {
		return ImageEvent{}, fmt.Errorf("decoding Image opcode %d: pointer size %d: %w", opcode, ptrSize, ErrPointerSize)
	}
	var ev ImageEvent
	switch opcode {
	case OpImageLoad:
		ev.Op = ImageLoad
	case OpImageUnload:
		ev.Op = ImageUnload
	case OpImageDCStart, OpImageDCEnd:
		ev.Op = ImageRundown
	default:
		return ImageEvent{}, fmt.Errorf("decoding Image opcode %d: %w", opcode, ErrUnknownOpcode)
	}
	fixed := imageFixedSize(ptrSize)
	if len(payload) < fixed {
		return ImageEvent{}, fmt.Errorf("decoding Image %s: %d-byte payload, %d needed before FileName: %w", ev.Op, len(payload), fixed, ErrTruncated)
	}
	p := 2 * ptrSize
	ev.Base = readPtr(payload, ptrSize)
	ev.Size = readPtr(payload[ptrSize:], ptrSize)
	ev.ProcessID = binary.LittleEndian.Uint32(payload[p:])
	ev.Checksum = binary.LittleEndian.Uint32(payload[p+4:])
	ev.TimeDateStamp = binary.LittleEndian.Uint32(payload[p+8:])
	ev.SignatureLevel = payload[p+12]
	ev.SignatureType = payload[p+13]
	ev.DefaultBase = readPtr(payload[p+16:], ptrSize)

	name := payload[fixed:]
	units := make([]uint16, 0, len(name)/2)
	terminated := false
	for i := 0; i+1 < len(name); i += 2 {
		u := binary.LittleEndian.Uint16(name[i:])
		if u == 0 {
			ev.Extra = len(name) - i - 2
			terminated = true
			break
		}
		units = append(units, u)
	}
	if !terminated {
		ev.Extra = len(name) % 2
	}
	ev.FileName = string(utf16.Decode(units))
	return ev, nil
}

// readPtr reads a little-endian pointer-sized value; b must hold ptrSize
// bytes.
func readPtr(b []byte, ptrSize int) uint64 {
	if ptrSize == 4 {
		return uint64(binary.LittleEndian.Uint32(b))
	}
	return binary.LittleEndian.Uint64(b)
}

// DecodeProcessName reads the process id and image name of a Process
// event (opcodes 1 Start, 2 End, 3 DCStart, 4 DCEnd; class
// Process_TypeGroup1, versions 3 and later) logged by a kernel with
// ps-byte pointers:
//
//	PTR UniqueProcessKey
//	u32 ProcessId, ParentId, SessionId
//	i32 ExitStatus
//	PTR DirectoryTableBase
//	u32 Flags                (version 4 and later)
//	    UserSID              (TOKEN_USER then SID; one NULL pointer if none)
//	    ImageFileName        (ANSI, NUL-terminated)
//
// It reports ok=false for other opcodes and versions, and for payloads that
// do not hold a name.
func DecodeProcessName(opcode, version uint8, p []byte, ps int) (pid uint32, name string, ok bool) {
	switch opcode {
	case 1, 2, 3, 4:
	default:
		return 0, "", false
	}
	if version < 3 || (ps != 4 && ps != 8) {
		return 0, "", false
	}
	off := ps + 16 + ps
	if version >= 4 {
		off += 4
	}
	if len(p) < off+ps {
		return 0, "", false
	}
	pid = binary.LittleEndian.Uint32(p[ps:])
	// UserSID: a TOKEN_USER (a SID pointer and attributes, two pointers'
	// worth), then the SID: revision, sub-authority count, 6-byte
	// authority, 4 bytes per sub-authority. A NULL first pointer: no SID.
	if readPtr(p[off:], ps) == 0 {
		off += ps
	} else {
		off += 2 * ps
		if len(p) < off+8 {
			return 0, "", false
		}
		off += 8 + 4*int(p[off+1])
	}
	if off > len(p) {
		return 0, "", false
	}
	rest := p[off:]
	for i, c := range rest {
		if c == 0 {
			return pid, string(rest[:i]), i > 0
		}
	}
	return 0, "", false
}
