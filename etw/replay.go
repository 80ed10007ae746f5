package etw

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
)

// ReplayMagic is the first line of a replay stream.
const ReplayMagic = "kmemprof etw replay v1\n"

// RecordKind is the kind of a replay record: which decoder its payload is
// for.
type RecordKind uint8

// Record kinds.
const (
	RecordPool  RecordKind = 1 // a PoolTrace event; payload for DecodePool
	RecordStack RecordKind = 2 // a StackWalk event; payload for DecodeStack
	RecordImage RecordKind = 3 // an Image event; payload for DecodeImage
	RecordLost  RecordKind = 4 // events the session lost; payload u64 count
)

// replayRecordHeader is the size of a record before its payload.
const replayRecordHeader = 1 + 1 + 1 + 4 + 4 + 8 + 2

// MaxReplayPayload is the largest payload a replay record holds.
const MaxReplayPayload = math.MaxUint16

// A replay stream is ReplayMagic followed by records, each
//
//	u8  kind       (RecordKind)
//	u8  opcode     (EVENT_DESCRIPTOR.Opcode)
//	u8  ptrSize    (4 or 8: the logging kernel's pointer size)
//	u32 thread     (EVENT_HEADER.ThreadId)
//	u32 pid        (EVENT_HEADER.ProcessId)
//	i64 timestamp  (EVENT_HEADER.TimeStamp, as delivered)
//	u16 len
//	    payload    (len bytes, the event's UserData)
//
// all little-endian. It carries exactly what the decoders and the Matcher
// use, so a recorded session replays into the same snapshot.

// ReplayWriter writes a replay stream. Build one with NewReplayWriter.
type ReplayWriter struct {
	w   io.Writer
	buf []byte
}

// NewReplayWriter writes ReplayMagic to w and returns a writer for the
// records. It returns w's error.
func NewReplayWriter(w io.Writer) (*ReplayWriter, error) {
	if _, err := io.WriteString(w, ReplayMagic); err != nil {
		return nil, fmt.Errorf("writing replay header: %w", err)
	}
	return &ReplayWriter{w: w}, nil
}

// Write writes one record. It returns an error for a payload longer than
// MaxReplayPayload, and w's errors.
func (rw *ReplayWriter) Write(kind RecordKind, opcode uint8, ptrSize int, h Header, payload []byte) error {
	if len(payload) > MaxReplayPayload {
		return fmt.Errorf("writing replay record: %d-byte payload, at most %d", len(payload), MaxReplayPayload)
	}
	b := rw.buf[:0]
	b = append(b, byte(kind), opcode, byte(ptrSize))
	b = binary.LittleEndian.AppendUint32(b, h.ThreadID)
	b = binary.LittleEndian.AppendUint32(b, h.ProcessID)
	b = binary.LittleEndian.AppendUint64(b, uint64(h.TimeStamp))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(payload)))
	b = append(b, payload...)
	rw.buf = b
	if _, err := rw.w.Write(b); err != nil {
		return fmt.Errorf("writing replay record: %w", err)
	}
	return nil
}

// WriteLost writes a record of n events the session lost.
func (rw *ReplayWriter) WriteLost(n uint64) error {
	return rw.Write(RecordLost, 0, 0, Header{}, binary.LittleEndian.AppendUint64(nil, n))
}

// ReadReplay reads a replay stream from r and feeds every record to m, in
// order, as the Windows session feeds live events (Matcher.Event): a
// payload that fails to decode, or a record of an unknown kind, is counted
// with m.DecodeError and skipped. Only a broken stream stops it: the error then wraps ErrBadReplay
// (wrong magic, a record cut short) or is r's error. Header.CPU is not
// recorded and reads 0.
func ReadReplay(r io.Reader, m *Matcher) error {
	br := bufio.NewReader(r)
	magic := make([]byte, len(ReplayMagic))
	if _, err := io.ReadFull(br, magic); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("reading replay header: %w", ErrBadReplay)
		}
		return fmt.Errorf("reading replay header: %w", err)
	}
	if string(magic) != ReplayMagic {
		return fmt.Errorf("reading replay header: not a kmemprof ETW replay stream: %w", ErrBadReplay)
	}
	var hdr [replayRecordHeader]byte
	payload := make([]byte, 0, 512)
	for n := 1; ; n++ {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			switch {
			case errors.Is(err, io.EOF):
				return nil
			case errors.Is(err, io.ErrUnexpectedEOF):
				return fmt.Errorf("reading replay record %d: header cut short: %w", n, ErrBadReplay)
			}
			return fmt.Errorf("reading replay record %d: %w", n, err)
		}
		kind, op, ptrSize := RecordKind(hdr[0]), hdr[1], int(hdr[2])
		h := Header{
			ThreadID:  binary.LittleEndian.Uint32(hdr[3:]),
			ProcessID: binary.LittleEndian.Uint32(hdr[7:]),
			TimeStamp: int64(binary.LittleEndian.Uint64(hdr[11:])),
		}
		size := int(binary.LittleEndian.Uint16(hdr[19:]))
		payload = slices.Grow(payload[:0], size)[:size]
		if _, err := io.ReadFull(br, payload); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("reading replay record %d: payload cut short: %w", n, ErrBadReplay)
			}
			return fmt.Errorf("reading replay record %d: %w", n, err)
		}
		replayRecord(m, kind, op, ptrSize, h, payload)
	}
}

// replayRecord decodes one record's payload and feeds it to m.
func replayRecord(m *Matcher, kind RecordKind, op uint8, ptrSize int, h Header, payload []byte) {
	switch kind {
	case RecordPool:
		m.Event(PoolTraceGUID, op, h, payload, ptrSize)
	case RecordStack:
		m.Event(StackWalkGUID, op, h, payload, ptrSize)
	case RecordImage:
		m.Event(ImageGUID, op, h, payload, ptrSize)
	case RecordLost:
		if len(payload) != 8 {
			m.DecodeError(fmt.Errorf("decoding lost-events record: %d-byte payload, 8 needed: %w", len(payload), ErrMalformed))
			return
		}
		m.Lost(LostEvents, binary.LittleEndian.Uint64(payload))
	default:
		m.DecodeError(fmt.Errorf("decoding replay record of kind %d: %w", kind, ErrUnknownOpcode))
	}
}
