package etw

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/kmemprof/kmemprof/tracer"
)

// hexb parses space-separated hex bytes, the way the layouts are written
// out below.
func hexb(s string) []byte {
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		panic(err)
	}
	return b
}

type poolCase struct {
	name    string
	op      uint8
	ptrSize int
	payload []byte
	want    PoolEvent
	wantErr error
}

// poolCases are byte-exact PoolTrace payloads; the fuzz target seeds from
// them too.
var poolCases = func() []poolCase {
	cs := []poolCase{
		{
			name: "PoolAlloc 64-bit", op: OpPoolAlloc, ptrSize: 8,
			payload: hexb(`00 02 00 00   4c 65 61 6b   00 01 00 00 00 00 00 00   00 00 10 00 00 a0 ff ff`),
			want:    PoolEvent{Alloc: true, PoolType: 512, Tag: TagValue("Leak"), Size: 0x100, Entry: 0xffffa00000100000},
		},
		{
			name: "PoolAllocSession 64-bit", op: OpPoolAllocSession, ptrSize: 8,
			payload: hexb(`21 00 00 00   47 73 65 73   40 00 00 00 00 00 00 00   00 10 00 00 00 9e ff ff   03 00 00 00`),
			want:    PoolEvent{Alloc: true, Session: true, PoolType: 33, Tag: TagValue("Gses"), Size: 0x40, Entry: 0xffff9e0000001000, SessionID: 3},
		},
		{
			name: "PoolFree 64-bit", op: OpPoolFree, ptrSize: 8,
			payload: hexb(`01 00 00 00   4e 44 6e 64   dc 05 00 00 00 00 00 00   00 00 20 00 00 b0 ff ff`),
			want:    PoolEvent{PoolType: 1, Tag: TagValue("NDnd"), Size: 1500, Entry: 0xffffb00000200000},
		},
		{
			name: "PoolFreeSession 64-bit session 0", op: OpPoolFreeSession, ptrSize: 8,
			payload: hexb(`20 00 00 00   47 73 65 73   40 00 00 00 00 00 00 00   00 10 00 00 00 9e ff ff   00 00 00 00`),
			want:    PoolEvent{Session: true, PoolType: 32, Tag: TagValue("Gses"), Size: 0x40, Entry: 0xffff9e0000001000},
		},
		{
			name: "PoolAlloc 32-bit", op: OpPoolAlloc, ptrSize: 4,
			payload: hexb(`00 00 00 00   4c 65 61 6b   00 01 00 00   00 00 10 a0`),
			want:    PoolEvent{Alloc: true, PoolType: 0, Tag: TagValue("Leak"), Size: 0x100, Entry: 0xa0100000},
		},
		{
			name: "PoolFreeSession 32-bit", op: OpPoolFreeSession, ptrSize: 4,
			payload: hexb(`21 00 00 00   47 73 65 73   40 00 00 00   00 10 00 9e   01 00 00 00`),
			want:    PoolEvent{Session: true, PoolType: 33, Tag: TagValue("Gses"), Size: 0x40, Entry: 0x9e001000, SessionID: 1},
		},
		{
			name: "PoolAlloc 64-bit oversized", op: OpPoolAlloc, ptrSize: 8,
			payload: hexb(`00 02 00 00   4c 65 61 6b   00 01 00 00 00 00 00 00   00 00 10 00 00 a0 ff ff   de ad be ef de ad be ef`),
			want:    PoolEvent{Alloc: true, PoolType: 512, Tag: TagValue("Leak"), Size: 0x100, Entry: 0xffffa00000100000, Extra: 8},
		},
		{
			name: "PoolFree 32-bit oversized by one", op: OpPoolFree, ptrSize: 4,
			payload: hexb(`01 00 00 00   4e 44 6e 64   dc 05 00 00   00 00 20 b0   ff`),
			want:    PoolEvent{PoolType: 1, Tag: TagValue("NDnd"), Size: 1500, Entry: 0xb0200000, Extra: 1},
		},
		{name: "unknown opcode", op: 0x24, ptrSize: 8, payload: make([]byte, 32), wantErr: ErrUnknownOpcode},
		{name: "opcode 0", op: 0, ptrSize: 8, payload: nil, wantErr: ErrUnknownOpcode},
		{name: "pointer size 0", op: OpPoolAlloc, ptrSize: 0, payload: make([]byte, 32), wantErr: ErrPointerSize},
		{name: "pointer size 2", op: OpPoolAlloc, ptrSize: 2, payload: make([]byte, 32), wantErr: ErrPointerSize},
		{name: "pointer size 16", op: OpPoolAlloc, ptrSize: 16, payload: make([]byte, 64), wantErr: ErrPointerSize},
		{name: "pointer size -8", op: OpPoolAlloc, ptrSize: -8, payload: make([]byte, 64), wantErr: ErrPointerSize},
	}
	// Every length below the minimum, for every opcode and pointer size.
	for _, op := range []uint8{OpPoolAlloc, OpPoolAllocSession, OpPoolFree, OpPoolFreeSession} {
		for _, ps := range []int{4, 8} {
			full := poolPayloadSize(op == OpPoolAllocSession || op == OpPoolFreeSession, ps)
			for n := range full {
				cs = append(cs, poolCase{
					name: fmt.Sprintf("%s %d-bit truncated to %d", poolOpName(op), 8*ps, n),
					op:   op, ptrSize: ps, payload: bytes.Repeat([]byte{0xab}, n), wantErr: ErrTruncated,
				})
			}
		}
	}
	return cs
}()

func TestDecodePool(t *testing.T) {
	for _, tc := range poolCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodePool(tc.op, tc.payload, tc.ptrSize)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("DecodePool error = %v, want %v", err, tc.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "decoding ") {
					t.Errorf("error %q does not say what was being decoded", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodePool: %v", err)
			}
			if got != tc.want {
				t.Errorf("DecodePool =\n%+v, want\n%+v", got, tc.want)
			}
		})
	}
}

func TestPoolPayloadSizes(t *testing.T) {
	// The sizes the documentation states: 24/28 bytes on x64, 16/20 on x86.
	for _, tc := range []struct {
		session bool
		ptrSize int
		want    int
	}{{false, 8, 24}, {true, 8, 28}, {false, 4, 16}, {true, 4, 20}} {
		if got := poolPayloadSize(tc.session, tc.ptrSize); got != tc.want {
			t.Errorf("poolPayloadSize(session=%v, %d) = %d, want %d", tc.session, tc.ptrSize, got, tc.want)
		}
	}
}

type stackCase struct {
	name    string
	ptrSize int
	payload []byte
	want    StackEvent
	wantErr error
}

func frameRange(n int, base uint64) []uint64 {
	fs := make([]uint64, n)
	for i := range fs {
		fs[i] = base + uint64(i)*0x10
	}
	return fs
}

var stackCases = func() []stackCase {
	cs := []stackCase{
		{
			name: "64-bit three frames", ptrSize: 8,
			payload: hexb(`40 e2 01 00 00 00 00 00   04 00 00 00   64 00 00 00
				30 1b 2a 00 00 f8 ff ff   34 12 00 03 00 f8 ff ff   00 00 6c 00 00 f8 ff ff`),
			want: StackEvent{EventTimeStamp: 123456, ProcessID: 4, ThreadID: 100,
				Frames: []uint64{0xfffff800002a1b30, 0xfffff80003001234, 0xfffff800006c0000}},
		},
		{
			name: "32-bit two frames zero-extended", ptrSize: 4,
			payload: hexb(`ff ff ff ff ff ff ff 7f   08 00 00 00   0c 00 00 00   30 1b 2a 80   34 12 00 83`),
			want: StackEvent{EventTimeStamp: 0x7fffffffffffffff, ProcessID: 8, ThreadID: 12,
				Frames: []uint64{0x802a1b30, 0x83001234}},
		},
		{
			name: "empty stack", ptrSize: 8,
			payload: hexb(`01 00 00 00 00 00 00 00   04 00 00 00   64 00 00 00`),
			want:    StackEvent{EventTimeStamp: 1, ProcessID: 4, ThreadID: 100, Frames: []uint64{}},
		},
		{
			name: "192 frames", ptrSize: 8,
			payload: stackPayload(8, 7, 4, 100, frameRange(MaxStackFrames, 0xfffff80000000000)...),
			want:    StackEvent{EventTimeStamp: 7, ProcessID: 4, ThreadID: 100, Frames: frameRange(MaxStackFrames, 0xfffff80000000000)},
		},
		{
			name: "192 frames 32-bit", ptrSize: 4,
			payload: stackPayload(4, 7, 4, 100, frameRange(MaxStackFrames, 0x80000000)...),
			want:    StackEvent{EventTimeStamp: 7, ProcessID: 4, ThreadID: 100, Frames: frameRange(MaxStackFrames, 0x80000000)},
		},
		{name: "193 frames", ptrSize: 8, payload: stackPayload(8, 7, 4, 100, frameRange(MaxStackFrames+1, 0)...), wantErr: ErrMalformed},
		{name: "193 frames 32-bit", ptrSize: 4, payload: stackPayload(4, 7, 4, 100, frameRange(MaxStackFrames+1, 0)...), wantErr: ErrMalformed},
		{name: "misaligned 64-bit", ptrSize: 8, payload: make([]byte, 16+12), wantErr: ErrMalformed},
		{name: "misaligned 32-bit", ptrSize: 4, payload: make([]byte, 16+6), wantErr: ErrMalformed},
		{name: "pointer size 3", ptrSize: 3, payload: make([]byte, 16+6), wantErr: ErrPointerSize},
	}
	for _, ps := range []int{4, 8} {
		for n := range stackHeaderSize {
			cs = append(cs, stackCase{
				name: fmt.Sprintf("%d-bit truncated to %d", 8*ps, n), ptrSize: ps,
				payload: bytes.Repeat([]byte{0xcd}, n), wantErr: ErrTruncated,
			})
		}
	}
	return cs
}()

func TestDecodeStack(t *testing.T) {
	for _, tc := range stackCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeStack(tc.payload, tc.ptrSize)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("DecodeStack error = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeStack: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("DecodeStack =\n%+v, want\n%+v", got, tc.want)
			}
		})
	}
}

type imageCase struct {
	name    string
	op      uint8
	ptrSize int
	payload []byte
	want    ImageEvent
	wantErr error
}

const ndisPath = `\SystemRoot\system32\drivers\ndis.sys`

var imageCases = func() []imageCase {
	fixed64 := imageFixed(8, 0xfffff80002000000, 0x100000, 0, 0x0011aabb, 0x5e8f3c21, 12, 1, 0x1c0000000)
	fixed32 := imageFixed(4, 0x82000000, 0x100000, 0, 0x0011aabb, 0x5e8f3c21, 0, 0, 0x10000)
	want64 := ImageEvent{Base: 0xfffff80002000000, Size: 0x100000, Checksum: 0x0011aabb, TimeDateStamp: 0x5e8f3c21,
		SignatureLevel: 12, SignatureType: 1, DefaultBase: 0x1c0000000}
	want32 := ImageEvent{Base: 0x82000000, Size: 0x100000, Checksum: 0x0011aabb, TimeDateStamp: 0x5e8f3c21, DefaultBase: 0x10000}
	with := func(e ImageEvent, op ImageOp, name string, extra int) ImageEvent {
		e.Op, e.FileName, e.Extra = op, name, extra
		return e
	}
	cs := []imageCase{
		{
			// The 64-bit layout written out byte by byte.
			name: "load 64-bit literal", op: OpImageLoad, ptrSize: 8,
			payload: cat(hexb(`
				00 00 00 02 00 f8 ff ff   00 00 10 00 00 00 00 00
				00 00 00 00   bb aa 11 00   21 3c 8f 5e   0c 01 00 00
				00 00 00 c0 01 00 00 00
				00 00 00 00   00 00 00 00   00 00 00 00   00 00 00 00`),
				utf16z("a.sys")),
			want: with(want64, ImageLoad, "a.sys", 0),
		},
		{name: "load 64-bit", op: OpImageLoad, ptrSize: 8, payload: cat(fixed64, utf16z(ndisPath)), want: with(want64, ImageLoad, ndisPath, 0)},
		{name: "unload 64-bit", op: OpImageUnload, ptrSize: 8, payload: cat(fixed64, utf16z(ndisPath)), want: with(want64, ImageUnload, ndisPath, 0)},
		{name: "DCStart 64-bit", op: OpImageDCStart, ptrSize: 8, payload: cat(fixed64, utf16z(ndisPath)), want: with(want64, ImageRundown, ndisPath, 0)},
		{name: "DCEnd 32-bit", op: OpImageDCEnd, ptrSize: 4, payload: cat(fixed32, utf16z(ndisPath)), want: with(want32, ImageRundown, ndisPath, 0)},
		{name: "load 32-bit", op: OpImageLoad, ptrSize: 4, payload: cat(fixed32, utf16z("x.sys")), want: with(want32, ImageLoad, "x.sys", 0)},
		{name: "no NUL at the end", op: OpImageLoad, ptrSize: 8, payload: cat(fixed64, utf16z("ndis.sys")[:16]), want: with(want64, ImageLoad, "ndis.sys", 0)},
		{name: "odd length without NUL", op: OpImageLoad, ptrSize: 8, payload: cat(fixed64, utf16z("ndis.sys")[:17]), want: with(want64, ImageLoad, "ndis.sys", 1)},
		{name: "odd length after NUL", op: OpImageLoad, ptrSize: 8, payload: cat(fixed64, utf16z("a.sys"), []byte{0x41}), want: with(want64, ImageLoad, "a.sys", 1)},
		{name: "bytes after NUL", op: OpImageLoad, ptrSize: 4, payload: cat(fixed32, utf16z("a.sys"), le32(7)), want: with(want32, ImageLoad, "a.sys", 4)},
		{name: "one dangling byte only", op: OpImageLoad, ptrSize: 8, payload: cat(fixed64, []byte{0x41}), want: with(want64, ImageLoad, "", 1)},
		{name: "empty name without NUL", op: OpImageLoad, ptrSize: 8, payload: fixed64, want: with(want64, ImageLoad, "", 0)},
		{name: "empty name", op: OpImageLoad, ptrSize: 8, payload: cat(fixed64, utf16z("")), want: with(want64, ImageLoad, "", 0)},
		{name: "non-ASCII name", op: OpImageLoad, ptrSize: 8, payload: cat(fixed64, utf16z(`\??\C:\驱动\😀.sys`)), want: with(want64, ImageLoad, `\??\C:\驱动\😀.sys`, 0)},
		{name: "unpaired surrogate", op: OpImageLoad, ptrSize: 8, payload: cat(fixed64, le16(0xd800), le16('a'), le16(0)), want: with(want64, ImageLoad, "\uFFFDa", 0)},
		{name: "unknown opcode", op: 33, ptrSize: 8, payload: cat(fixed64, utf16z(ndisPath)), wantErr: ErrUnknownOpcode},
		{name: "pointer size 0", op: OpImageLoad, ptrSize: 0, payload: cat(fixed64, utf16z(ndisPath)), wantErr: ErrPointerSize},
	}
	for _, ps := range []int{4, 8} {
		fixed := imageFixedSize(ps)
		for n := range fixed {
			cs = append(cs, imageCase{
				name: fmt.Sprintf("%d-bit truncated to %d", 8*ps, n), op: OpImageDCStart, ptrSize: ps,
				payload: bytes.Repeat([]byte{0xef}, n), wantErr: ErrTruncated,
			})
		}
	}
	return cs
}()

func TestImageFixedSizes(t *testing.T) {
	if got := imageFixedSize(8); got != 56 {
		t.Errorf("64-bit Image_Load fields before FileName: %d bytes, want 56", got)
	}
	if got := imageFixedSize(4); got != 44 {
		t.Errorf("32-bit Image_Load fields before FileName: %d bytes, want 44", got)
	}
}

func TestDecodeImage(t *testing.T) {
	for _, tc := range imageCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeImage(tc.op, tc.payload, tc.ptrSize)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("DecodeImage error = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeImage: %v", err)
			}
			if got != tc.want {
				t.Errorf("DecodeImage =\n%+v, want\n%+v", got, tc.want)
			}
		})
	}
}

func TestImageOpString(t *testing.T) {
	for op, want := range map[ImageOp]string{ImageLoad: "load", ImageUnload: "unload", ImageRundown: "rundown", 9: "ImageOp(9)"} {
		if got := op.String(); got != want {
			t.Errorf("ImageOp(%d).String() = %q, want %q", op, got, want)
		}
	}
}

// sentinel reports whether err wraps one of the decoders' sentinel errors.
func sentinel(err error) bool {
	for _, s := range []error{ErrTruncated, ErrUnknownOpcode, ErrPointerSize, ErrMalformed} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func FuzzDecodePool(f *testing.F) {
	for _, tc := range poolCases {
		f.Add(tc.op, tc.payload, tc.ptrSize)
	}
	f.Fuzz(func(t *testing.T, op uint8, payload []byte, ptrSize int) {
		ev, err := DecodePool(op, payload, ptrSize)
		if err != nil {
			if !sentinel(err) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		if ev.Extra != len(payload)-poolPayloadSize(ev.Session, ptrSize) || ev.Extra < 0 {
			t.Fatalf("Extra = %d for a %d-byte payload", ev.Extra, len(payload))
		}
		if ev.Session != (op == OpPoolAllocSession || op == OpPoolFreeSession) || ev.Alloc != (op == OpPoolAlloc || op == OpPoolAllocSession) {
			t.Fatalf("opcode %#x decoded as %+v", op, ev)
		}
		if ptrSize == 4 && (ev.Size > 0xffffffff || ev.Entry > 0xffffffff) {
			t.Fatalf("32-bit fields wider than 32 bits: %+v", ev)
		}
	})
}

func FuzzDecodeStack(f *testing.F) {
	for _, tc := range stackCases {
		f.Add(tc.payload, tc.ptrSize)
	}
	f.Fuzz(func(t *testing.T, payload []byte, ptrSize int) {
		ev, err := DecodeStack(payload, ptrSize)
		if err != nil {
			if !sentinel(err) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		if len(ev.Frames) > MaxStackFrames || stackHeaderSize+len(ev.Frames)*ptrSize != len(payload) {
			t.Fatalf("%d frames from a %d-byte payload", len(ev.Frames), len(payload))
		}
	})
}

func FuzzDecodeImage(f *testing.F) {
	for _, tc := range imageCases {
		f.Add(tc.op, tc.payload, tc.ptrSize)
	}
	f.Fuzz(func(t *testing.T, op uint8, payload []byte, ptrSize int) {
		ev, err := DecodeImage(op, payload, ptrSize)
		if err != nil {
			if !sentinel(err) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		if ev.Extra < 0 || ev.Extra > len(payload)-imageFixedSize(ptrSize) {
			t.Fatalf("Extra = %d for a %d-byte payload", ev.Extra, len(payload))
		}
		if strings.ContainsRune(ev.FileName, 0) {
			t.Fatalf("FileName %q holds a NUL", ev.FileName)
		}
	})
}

// TestDecodePoolBigPool: the BIGPOOL bit of PoolType is a flag, not part of
// the pool type the "pool" label names.
func TestDecodePoolBigPool(t *testing.T) {
	ev, err := DecodePool(OpPoolAlloc, poolPayload(OpPoolAlloc, 8, PoolTypeBigPool|512, TagValue("Big "), 1<<20, 0xffffe00000000000, 0), 8)
	if err != nil {
		t.Fatal(err)
	}
	if !ev.Big || ev.PoolType != 512 || PoolTypeName(ev.PoolType) != "NonPagedNx" {
		t.Errorf("big NonPagedNx allocation decoded as Big=%v PoolType=%#x (%s)", ev.Big, ev.PoolType, PoolTypeName(ev.PoolType))
	}
	ev, err = DecodePool(OpPoolFree, poolPayload(OpPoolFree, 4, 1, TagValue("Small"), 64, 0x80001000, 0), 4)
	if err != nil || ev.Big || ev.PoolType != 1 {
		t.Errorf("small Paged free: %+v, %v", ev, err)
	}
}

// TestDecodeProcessName: Process events name their process, with and
// without a user SID, in versions 3 (no Flags) and 4, both pointer sizes;
// a Matcher takes the names for the comm label.
func TestDecodeProcessName(t *testing.T) {
	sid := cat([]byte{1, 2}, []byte{0, 0, 0, 0, 0, 5}, le32(21), le32(1000)) // S-1-5-21-1000
	for _, ps := range []int{8, 4} {
		for _, version := range []uint8{3, 4} {
			for _, withSID := range []bool{false, true} {
				p := cat(ptr(0xffff000000001000, ps), le32(4242), le32(4), le32(1), le32(0), ptr(0x1aa000, ps))
				if version >= 4 {
					p = append(p, le32(0)...) // Flags
				}
				if withSID {
					p = cat(p, ptr(0xffff000000002000, ps), ptr(0, ps), sid) // TOKEN_USER, then the SID
				} else {
					p = cat(p, ptr(0, ps))
				}
				p = cat(p, []byte("leaker.exe\x00"), utf16z("leaker.exe --leak"))
				pid, name, ok := DecodeProcessName(3, version, p, ps)
				if !ok || pid != 4242 || name != "leaker.exe" {
					t.Errorf("ptr %d v%d sid %v: %d %q %v", ps, version, withSID, pid, name, ok)
				}
			}
		}
	}
	if _, _, ok := DecodeProcessName(3, 2, make([]byte, 64), 8); ok {
		t.Errorf("version 2 decoded")
	}
	if _, _, ok := DecodeProcessName(3, 4, make([]byte, 10), 8); ok {
		t.Errorf("a short payload decoded")
	}
	m := NewMatcher(MatcherConfig{RawTimestamps: true, ProcessName: func(uint32) string { return "from OpenProcess" }})
	p := cat(ptr(1, 8), le32(4242), le32(4), le32(1), le32(0), ptr(2, 8), le32(0), ptr(0, 8), []byte("leaker.exe\x00"))
	m.Event(ProcessGUID, 3, Header{Version: 4}, p, 8)
	m.Event(PoolTraceGUID, OpPoolAlloc, Header{ThreadID: 1, ProcessID: 4242, TimeStamp: 10}, poolPayload(OpPoolAlloc, 8, 0, TagValue("Leak"), 8, 0xffffa00000000000, 0), 8)
	m.Event(PoolTraceGUID, OpPoolAlloc, Header{ThreadID: 1, ProcessID: 77, TimeStamp: 11}, poolPayload(OpPoolAlloc, 8, 0, TagValue("Leak"), 8, 0xffffa00000001000, 0), 8)
	snap := m.Snapshot(tracer.Meta{})
	got := map[uint32]string{}
	for _, r := range snap.Records {
		got[r.PID] = r.Comm
	}
	if got[4242] != "leaker.exe" || got[77] != "from OpenProcess" {
		t.Errorf("comms %v: want the Process event's name, else ProcessName's", got)
	}
}
