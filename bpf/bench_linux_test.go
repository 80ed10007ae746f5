package bpf

import (
	"testing"

	"github.com/kmemprof/kmemprof/bpf/bpftest"
)

// BenchmarkSnapshot reads the outstanding table, the stacks and the counters
// after a capture in which a child made 50,000 eventfds (about 200,000
// outstanding records).
func BenchmarkSnapshot(b *testing.B) {
	bpftest.Require(b)
	tr, err := Open(Config{Tracking: TrackFull})
	if err != nil {
		b.Fatalf("Open: %+v", err)
	}
	defer tr.Close()
	bpftest.StartLeakers(b, 50000)
	if err := tr.Detach(); err != nil {
		b.Fatal(err)
	}
	var records int
	for b.Loop() {
		snap, err := tr.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		records = len(snap.Records)
	}
	b.ReportMetric(float64(records), "records")
	b.ReportMetric(float64(records)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
