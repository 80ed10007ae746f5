package tracer_test

import (
	"testing"

	"github.com/kmemprof/kmemprof/tracer"
)

// TestSampledProfilePeriod: a sampled capture says its rate in Period (one
// allocation in N), as runtime/pprof does; a full one keeps Period 1.
func TestSampledProfilePeriod(t *testing.T) {
	for _, every := range []uint64{0, 64} {
		snap := &tracer.Snapshot{
			Stacks:      map[tracer.StackID][]uint64{sKmalloc: {aProg1, aKmalloc, aAllocFoo}},
			Records:     []tracer.Record{{Key: tracer.Key{Kind: tracer.KindSlab, Stack: sKmalloc, Cache: "kmalloc-64"}, Addr: 64, BytesAlloc: 64}},
			SampleEvery: every,
		}
		agg, err := tracer.Aggregate(snap, newFakeSymbolizer(t), tracer.Options{})
		if err != nil {
			t.Fatal(err)
		}
		p, err := agg.Profile()
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case every > 1 && (p.Period != 64 || p.PeriodType.Type != "allocations" || p.PeriodType.Unit != "count"):
			t.Errorf("sampled 1 in 64: period %v %d, want allocations/count 64", p.PeriodType, p.Period)
		case every <= 1 && (p.Period != 1 || p.PeriodType.Type != "space"):
			t.Errorf("not sampled: period %v %d, want space/bytes 1", p.PeriodType, p.Period)
		}
		if got := p.Sample[0].Value[3]; every > 1 && got != 64*64 {
			t.Errorf("in-use space %d, want 64 bytes scaled by 64", got)
		}
	}
}
