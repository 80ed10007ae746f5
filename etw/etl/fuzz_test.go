package etl

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecompressXpress: any input decompresses or fails with ErrCorrupt,
// within its limit; what CompressXpress makes of it comes back whole.
func FuzzDecompressXpress(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 'a', 'b', 'c'})
	f.Add(CompressXpress(bytes.Repeat([]byte("kmemprof pool trace "), 100)))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x07, 0x00, 0xff, 0xff, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, src []byte) {
		out, err := DecompressXpress(nil, src, 1<<16)
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error %v does not wrap ErrCorrupt", err)
		}
		if len(out) > 1<<16 {
			t.Fatalf("%d bytes out, limit 65536", len(out))
		}
		back, err := DecompressXpress(nil, CompressXpress(src), len(src))
		if err != nil || !bytes.Equal(back, src) {
			t.Fatalf("round trip of %d bytes: %v", len(src), err)
		}
	})
}

// fuzzTrace is a small valid trace for the seeds.
func fuzzTrace(compress bool) []byte {
	w, _ := NewWriter(LogfileHeader{PointerSize: 8, PerfFreq: 1e7, ClockType: 1, LoggerName: "fuzz"}, 4096, compress)
	w.Kernel(0, false, GroupPool, OpPoolAlloc, 2, 1, 2, 100, make([]byte, 24))
	w.Kernel(1, true, GroupStackWalk, OpStack, 2, 0, 0, 101, make([]byte, 32))
	var b bytes.Buffer
	w.Close(&b)
	return b.Bytes()
}

// FuzzOpen: the reader survives any file: Open, Info and SortedRecords
// return errors, never panic, and read nothing outside the file.
func FuzzOpen(f *testing.F) {
	f.Add(fuzzTrace(false))
	f.Add(fuzzTrace(true))
	f.Add([]byte("not a trace"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Open(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		for _, b := range file.Buffers {
			if b.Filled > 1<<20 {
				return // decompressing 16 MB buffers is legal but slow to fuzz
			}
		}
		if _, err := file.Info(); err != nil {
			return
		}
		n := 0
		file.SortedRecords(func(r *Record) error {
			n++
			if r.PtrSize != 4 && r.PtrSize != 8 {
				t.Fatalf("pointer size %d", r.PtrSize)
			}
			return nil
		})
	})
}

// FuzzWalkBuffer: the event header decoders on any buffer contents: every
// record they give lies inside the buffer.
func FuzzWalkBuffer(f *testing.F) {
	f.Add(fuzzTrace(false)[BufferHeaderSize:1024])
	f.Add([]byte{0x02, 0x00, 0x02, 0xc0, 0x20, 0x00, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		walkBuffer(data, BufferInfo{}, func(r *Record) error {
			if r.off < 0 || r.off+r.size > len(data) || len(r.Payload) > r.size {
				t.Fatalf("record at %d+%d outside %d bytes", r.off, r.size, len(data))
			}
			return nil
		})
	})
}
