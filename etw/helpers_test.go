package etw

import (
	"encoding/binary"
	"unicode/utf16"
)

// Payload builders for tests and the replay fixture. They follow the
// documented layouts field by field (see the decoders' doc comments), so
// that the decoders are checked against the documentation rather than
// against themselves.

func le16(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

// ptr encodes a PTR or SIZE_T field.
func ptr(v uint64, ptrSize int) []byte {
	if ptrSize == 4 {
		return le32(uint32(v))
	}
	return le64(v)
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// utf16z encodes s as NUL-terminated UTF-16LE.
func utf16z(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, le16(u)...)
	}
	return append(b, 0, 0)
}

// poolPayload builds a PoolTrace payload: PoolType, Tag, NumberOfBytes,
// Entry, and SessionId for the session opcodes.
func poolPayload(op uint8, ptrSize int, poolType, tag uint32, size, entry uint64, session uint32) []byte {
	b := cat(le32(poolType), le32(tag), ptr(size, ptrSize), ptr(entry, ptrSize))
	if op == OpPoolAllocSession || op == OpPoolFreeSession {
		b = append(b, le32(session)...)
	}
	return b
}

// stackPayload builds a StackWalk payload: EventTimeStamp, StackProcess,
// StackThread, then the frames.
func stackPayload(ptrSize int, eventTS uint64, pid, tid uint32, frames ...uint64) []byte {
	b := cat(le64(eventTS), le32(pid), le32(tid))
	for _, f := range frames {
		b = append(b, ptr(f, ptrSize)...)
	}
	return b
}

// imageFixed builds the Image_Load fields before FileName: ImageBase,
// ImageSize, ProcessId, ImageChecksum, TimeDateStamp, SignatureLevel,
// SignatureType, Reserved0, DefaultBase, Reserved1..4.
func imageFixed(ptrSize int, base, size uint64, pid, checksum, stamp uint32, sigLevel, sigType uint8, defBase uint64) []byte {
	return cat(ptr(base, ptrSize), ptr(size, ptrSize), le32(pid), le32(checksum), le32(stamp),
		[]byte{sigLevel, sigType}, le16(0), ptr(defBase, ptrSize),
		le32(0), le32(0), le32(0), le32(0))
}

// imagePayload builds an Image_Load payload with a NUL-terminated name.
func imagePayload(ptrSize int, base, size uint64, pid uint32, name string) []byte {
	return cat(imageFixed(ptrSize, base, size, pid, 0x1234, 0x5f000000, 0, 0, base), utf16z(name))
}
