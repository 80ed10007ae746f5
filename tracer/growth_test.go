package tracer

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

type symbolizerFunc func(pc uint64) (Symbol, bool)

func (f symbolizerFunc) Lookup(pc uint64) (Symbol, bool) { return f(pc) }

func TestSeriesGrowth(t *testing.T) {
	const (
		leak    StackID = 1 // climbs at every interval
		plateau StackID = 2 // rose early, holds more, flat since
		churn   StackID = 3 // up and down
		gone    StackID = 4 // rose, then all freed
	)
	counts := map[StackID][]uint64{
		leak:    {100, 200, 300, 400, 500, 600},
		plateau: {5000, 9000, 9000, 9000, 9000, 9000},
		churn:   {50, 10, 60, 20, 70, 30},
		gone:    {10, 20, 0, 0, 0, 0},
	}
	var s Series
	start := time.Unix(1000, 0)
	s.Start = start
	for i := 0; i < 6; i++ {
		p := map[StackID]Usage{}
		for id, c := range counts {
			if c[i] > 0 {
				p[id] = Usage{Objects: c[i], Bytes: 64 * c[i]}
			}
		}
		s.Add(start.Add(time.Duration(i+1)*time.Second), p)
	}
	g := s.Growth()
	if g[leak].Steadiness != 1 || g[leak].Objects != 600 || g[leak].Bytes != 600*64 {
		t.Errorf("leak: %+v, want all 600 objects at steadiness 1", g[leak])
	}
	if g[plateau].Objects != 0 {
		t.Errorf("plateau: %+v, want no growth in the second half", g[plateau])
	}
	if g[churn].Objects >= g[leak].Objects/10 {
		t.Errorf("churn: %+v ranks near the leak %+v", g[churn], g[leak])
	}
	if _, ok := g[gone]; ok {
		t.Errorf("a stack that holds nothing at the end has a growth figure: %+v", g[gone])
	}
	if g[leak].Rises != 6 || g[leak].Intervals != 6 {
		t.Errorf("leak rises %d of %d, want 6 of 6", g[leak].Rises, g[leak].Intervals)
	}
}

func TestGrowthInProfileAndSummary(t *testing.T) {
	snap := &Snapshot{
		Meta:   Meta{Platform: "linux"},
		Stacks: map[StackID][]uint64{1: {0x10}, 2: {0x20}},
		Taken:  time.Unix(2000, 0),
		Records: []Record{
			{Key: Key{Kind: KindSlab, Stack: 1, Cache: "kmalloc-64", PID: 7}, BytesAlloc: 64},
			{Key: Key{Kind: KindSlab, Stack: 1, Cache: "kmalloc-64", PID: 8}, BytesAlloc: 64},
			{Key: Key{Kind: KindSlab, Stack: 2, Cache: "dentry"}, BytesAlloc: 192},
			{Key: Key{Kind: KindSlab, Stack: 2, Cache: "dentry"}, BytesAlloc: 192},
			{Key: Key{Kind: KindSlab, Stack: 2, Cache: "dentry"}, BytesAlloc: 192},
		},
	}
	sym := symbolizerFunc(func(pc uint64) (Symbol, bool) {
		for _, a := range []uint64{pc, pc + 1} {
			if n, ok := map[uint64]string{0x10: "leaky_fn", 0x20: "d_alloc"}[a]; ok {
				return Symbol{Name: n, Start: a}, true
			}
		}
		return Symbol{}, false
	})
	agg, err := Aggregate(snap, sym, Options{
		Growth:      map[StackID]GrowthFigure{1: {Objects: 2, Bytes: 128, Steadiness: 1}, 2: {Objects: 3, Bytes: 576, Steadiness: 1}},
		Reclaimable: map[string]bool{"dentry": true},
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := agg.Profile()
	if err != nil {
		t.Fatal(err)
	}
	if len(p.SampleType) != 6 || p.SampleType[4].Type != "growth_objects" || p.SampleType[5].Type != "growth_space" {
		t.Fatalf("sample types %v", p.SampleType)
	}
	var leakGrowth int64
	for _, s := range p.Sample {
		if s.Location[0].Line[0].Function.Name == "leaky_fn" {
			leakGrowth += s.Value[4]
		}
		if s.Label["cache"][0] == "dentry" && (len(s.Label["reclaimable"]) != 1 || s.Label["reclaimable"][0] != "true") {
			t.Errorf("dentry sample not labelled reclaimable: %v", s.Label)
		}
	}
	if leakGrowth != 2 {
		t.Errorf("growth_objects of the leak's samples sum to %d, want 2 (split over two pids)", leakGrowth)
	}
	var buf bytes.Buffer
	if err := agg.WriteSummary(&buf, 5); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(buf.String(), "\n")
	if len(lines) < 3 || !strings.Contains(lines[0], "GROWTH") || !strings.Contains(lines[1], "leaky_fn") || !strings.Contains(lines[2], "dentry (reclaimable)") {
		t.Errorf("summary does not rank the unreclaimable grower first:\n%s", buf.String())
	}
}
