package tracer_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/kmemprof/kmemprof/tracer"
)

// summaryOf writes agg's summary.
func summaryOf(t *testing.T, agg *tracer.Aggregation, n int) string {
	t.Helper()
	var buf bytes.Buffer
	if err := agg.WriteSummary(&buf, n); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// roundTrip writes agg as a profile, reads it back and rebuilds the
// aggregation from it.
func roundTrip(t *testing.T, agg *tracer.Aggregation) (*tracer.Aggregation, []string) {
	t.Helper()
	p, err := agg.Profile()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := tracer.EncodeProfile(&buf, p); err != nil {
		t.Fatal(err)
	}
	back, err := profile.Parse(&buf)
	if err != nil {
		t.Fatal(err)
	}
	got, rest, err := tracer.FromProfile(back, agg.Platform)
	if err != nil {
		t.Fatal(err)
	}
	return got, rest
}

// TestFromProfileSummary: the summary of a profile read back is the one
// printed at capture end: rows (REQ%, reclaimable, untraced, merged,
// removed memcgs), totals, counters with their loss lines, the self-check.
func TestFromProfileSummary(t *testing.T) {
	agg, err := tracer.Aggregate(fixture(), newFakeSymbolizer(t), fixtureOptions())
	if err != nil {
		t.Fatal(err)
	}
	agg.SelfCheck = tracer.RunSelfCheck(tracer.SelfCheckInput{Taken: time.Unix(100, 0), Source: "/proc/slabinfo"})
	want := summaryOf(t, agg, 10)
	got, rest := roundTrip(t, agg)
	if g := summaryOf(t, got, 10); g != want {
		t.Errorf("summary read back differs:\n--- at capture end\n%s\n--- read back\n%s", want, g)
	}
	if len(rest) == 0 || !strings.HasPrefix(rest[0], "kmemprof") {
		t.Errorf("capture facts not returned: %q", rest)
	}
	for _, c := range rest {
		if strings.HasPrefix(c, "losses:") || strings.HasPrefix(c, "self-check") {
			t.Errorf("comment %q returned although the summary prints it", c)
		}
	}
}

// TestFromProfileGrowth: growth, steadiness and the reclaimable rows'
// growth (zero in the growth sample types) come back, ranked as they were.
func TestFromProfileGrowth(t *testing.T) {
	snap := &tracer.Snapshot{
		Meta:   tracer.Meta{Platform: "linux"},
		Stacks: map[tracer.StackID][]uint64{1: {lfDAlloc, lfCaller}, 2: {lfCaller}},
		Taken:  time.Unix(2000, 0),
	}
	for i := 0; i < 4; i++ {
		snap.Records = append(snap.Records,
			tracer.Record{Key: tracer.Key{Kind: tracer.KindSlab, Stack: 1, Cache: "dentry"}, BytesAlloc: 192, BytesReq: 192},
			tracer.Record{Key: tracer.Key{Kind: tracer.KindSlab, Stack: 2, Cache: "kmalloc-64", PID: uint32(i % 2)}, BytesAlloc: 64, BytesReq: 40})
	}
	agg, err := tracer.Aggregate(snap, leafSymbolizer(), tracer.Options{
		Growth:      map[tracer.StackID]tracer.GrowthFigure{1: {Objects: 4, Bytes: 768, Steadiness: 0.75}, 2: {Objects: 3, Bytes: 192, Steadiness: 2.0 / 3}},
		Reclaimable: map[string]bool{"dentry": true},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := summaryOf(t, agg, 5)
	got, _ := roundTrip(t, agg)
	if g := summaryOf(t, got, 5); g != want {
		t.Errorf("summary read back differs:\n--- at capture end\n%s\n--- read back\n%s", want, g)
	}
	if !strings.Contains(want, "67%") || !strings.Contains(want, "768 B") {
		t.Errorf("the fixture does not show steadiness and reclaimable growth:\n%s", want)
	}
}

func TestFromProfileRefusesOthers(t *testing.T) {
	p := &profile.Profile{SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}}}
	if _, _, err := tracer.FromProfile(p, tracer.Platform{}); err == nil || !strings.Contains(err.Error(), "not a kmemprof profile") {
		t.Errorf("a CPU profile: %v", err)
	}
}
