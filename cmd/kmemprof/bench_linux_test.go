package main

import (
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kmemprof/kmemprof/bpf"
	"github.com/kmemprof/kmemprof/bpf/bpftest"
	"github.com/kmemprof/kmemprof/symbolize"
	"github.com/kmemprof/kmemprof/symbolize/host"
	"github.com/kmemprof/kmemprof/tracer"
)

// BenchmarkStartup measures the time from starting `kmemprof record` to its
// "tracing" line (programs loaded and attached, with the default 1M-slot
// table), as a real process. It reports the median.
func BenchmarkStartup(b *testing.B) {
	bpftest.Require(b)
	var times []time.Duration
	for b.Loop() {
		start := time.Now()
		r := startRecord(b, "-d", "1m", "--top", "0")
		times = append(times, time.Since(start))
		r.stop(b, syscall.SIGINT)
	}
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Milliseconds()), "ms-to-tracing(median)")
}

// BenchmarkSnapshotToProfile1M measures what happens at the end of a real
// capture with about 1,000,000 outstanding allocations (a child holding
// 250,000 eventfds, four allocations each): read the kernel table, symbolize,
// aggregate, build and encode the profile. It reports the time per op and the
// process's peak RSS (VmHWM) after the first op, which includes everything the
// test binary holds.
func BenchmarkSnapshotToProfile1M(b *testing.B) {
	bpftest.Require(b)
	tr, err := bpf.Open(bpf.Config{Tracking: bpf.TrackFull, MaxOutstanding: 1 << 21})
	if err != nil {
		b.Fatalf("Open: %+v", err)
	}
	defer tr.Close()
	bpftest.StartLeakers(b, 250000)
	if err := tr.Detach(); err != nil {
		b.Fatal(err)
	}
	syms, err := symbolize.LoadKallsyms()
	if err != nil {
		b.Fatal(err)
	}
	var records int
	var firstRSS uint64
	for b.Loop() {
		snap, err := tr.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		records = len(snap.Records)
		agg, err := tracer.Aggregate(snap, kallsymsSymbolizer{syms}, tracer.Options{CgroupPath: host.NewCgroupResolver().Path})
		if err != nil {
			b.Fatal(err)
		}
		p, err := agg.Profile()
		if err != nil {
			b.Fatal(err)
		}
		if err := tracer.EncodeProfile(io.Discard, p); err != nil {
			b.Fatal(err)
		}
		if firstRSS == 0 {
			// kmemprof does this once per capture: the peak of the first op is
			// what a user sees (later ops add the garbage of earlier ones).
			firstRSS = peakRSS()
		}
	}
	b.ReportMetric(float64(records), "records")
	b.ReportMetric(float64(firstRSS)/(1<<20), "peak-RSS-MB")
}

// peakRSS returns VmHWM of this process in bytes.
func peakRSS() uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
