package etl

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

func TestXpressRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 200 {
		n := rng.IntN(70000)
		src := make([]byte, n)
		switch i % 3 {
		case 0: // random
			for j := range src {
				src[j] = byte(rng.IntN(256))
			}
		case 1: // few symbols: long matches
			for j := range src {
				src[j] = byte(rng.IntN(3))
			}
		case 2: // records with repeated headers
			for j := range src {
				src[j] = byte(j % 48)
				if rng.IntN(10) == 0 {
					src[j] = byte(rng.IntN(256))
				}
			}
		}
		c := CompressXpress(src)
		got, err := DecompressXpress(nil, c, len(src))
		if err != nil || !bytes.Equal(got, src) {
			t.Fatalf("case %d (%d bytes, %d compressed): round trip failed: %v", i, n, len(c), err)
		}
	}
}

// TestTruncatedTrace: a trace cut inside a buffer (copied while being
// written) opens, says so, and reads every whole buffer.
func TestTruncatedTrace(t *testing.T) {
	w, err := NewWriter(LogfileHeader{PointerSize: 8, PerfFreq: 1e7, ClockType: 1, EventsLost: 3, BuffersLost: 1}, 4096, false)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		w.Kernel(uint16(i%2), false, GroupPool, OpPoolAlloc, 2, 1, 2, int64(100+i), make([]byte, 24))
	}
	var b bytes.Buffer
	w.Close(&b)
	whole := b.Bytes()
	f, err := Open(bytes.NewReader(whole), int64(len(whole)))
	if err != nil || f.Truncated {
		t.Fatalf("whole trace: %v, truncated %v", err, f.Truncated)
	}
	in, err := f.Info()
	if err != nil || in.Pool.Allocs != 300 || in.Records != 301 || in.Lost.Events != 3 || in.Lost.Buffers != 1 {
		t.Fatalf("whole trace: %+v, %v", in, err)
	}
	cut := whole[:len(whole)-100]
	f, err = Open(bytes.NewReader(cut), int64(len(cut)))
	if err != nil || !f.Truncated {
		t.Fatalf("cut trace: %v, truncated %v", err, f != nil && f.Truncated)
	}
	in, err = f.Info()
	if err != nil || !in.Truncated || in.Pool.Allocs >= 300 || in.Pool.Allocs == 0 || in.BuffersBad != 0 {
		t.Errorf("cut trace: truncated %v, %d allocations, %d bad buffers, %v", in.Truncated, in.Pool.Allocs, in.BuffersBad, err)
	}
	// A trace whose first buffer is not one.
	if _, err := Open(bytes.NewReader([]byte("x")), 1); !errors.Is(err, ErrNotETL) {
		t.Errorf("one byte: %v, want ErrNotETL", err)
	}
}
