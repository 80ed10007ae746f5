package etl

import (
	"bytes"
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
