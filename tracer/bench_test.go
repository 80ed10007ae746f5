package tracer_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kmemprof/kmemprof/tracer"
)

// symTable is a symbolizer shaped like a kallsyms lookup: a binary search over
// sorted symbol start addresses.
type symTable struct {
	starts []uint64
	names  []string
	mods   []string
	end    uint64
}

func (s *symTable) Lookup(pc uint64) (tracer.Symbol, bool) {
	i, found := slices.BinarySearch(s.starts, pc)
	if !found {
		i--
	}
	if i < 0 || pc >= s.end {
		return tracer.Symbol{}, false
	}
	return tracer.Symbol{Name: s.names[i], Start: s.starts[i], Module: s.mods[i]}, true
}

// benchSnapshot builds a snapshot of nRecords outstanding allocations over
// nStacks stacks of about depth frames drawn from nAddrs distinct addresses
// in a table of nSyms symbols. A few hot stacks hold most allocations, each
// stack mostly allocates from one cache, and pids come from a small set, as
// on a real system.
func benchSnapshot(nRecords, nStacks, depth, nAddrs, nSyms, nPIDs int) (*tracer.Snapshot, *symTable) {
	rng := rand.New(rand.NewPCG(1, 2))
	const text = 0xffffffff81000000
	sym := &symTable{}
	addr := uint64(text)
	for i := range nSyms {
		sym.starts = append(sym.starts, addr)
		sym.names = append(sym.names, fmt.Sprintf("kfunc_%d", i))
		mod := ""
		if i >= nSyms*9/10 {
			mod = fmt.Sprintf("mod%d", i%40)
		}
		sym.mods = append(sym.mods, mod)
		addr += 16 + uint64(rng.IntN(64))*16
	}
	sym.end = addr
	// The symbols every BPF-walked stack starts with.
	plumbing := []string{"bpf_prog_6deef7357e7b4530_kmalloc", "bpf_trace_run2", "__bpf_trace_kmalloc", "__kmalloc_noprof"}
	for i, name := range plumbing {
		sym.names[i] = name
	}

	inside := func(i int) uint64 {
		size := sym.starts[i+1] - sym.starts[i]
		return sym.starts[i] + 1 + rng.Uint64N(size-1)
	}
	addrs := make([]uint64, nAddrs)
	for i := range addrs {
		addrs[i] = inside(len(plumbing) + rng.IntN(nSyms-len(plumbing)-1))
	}
	head := make([]uint64, len(plumbing))
	for i := range plumbing {
		head[i] = inside(i)
	}

	caches := []string{"kmalloc-8", "kmalloc-16", "kmalloc-32", "kmalloc-64", "kmalloc-96", "kmalloc-128",
		"kmalloc-192", "kmalloc-256", "kmalloc-512", "kmalloc-1k", "kmalloc-2k", "kmalloc-4k"}
	sizes := []uint64{8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096}

	snap := &tracer.Snapshot{
		Meta: tracer.Meta{
			Platform: "linux", Kernel: "6.8.0", AttachMode: "raw_tp",
			Start: time.Unix(1700000000, 0), Duration: time.Minute,
			Counters: []tracer.Counter{{Name: "ringbuf_drops", Help: "dropped events", Loss: true}},
		},
		Stacks: make(map[tracer.StackID][]uint64, nStacks),
		Taken:  time.Unix(1700000060, 0),
	}
	stackCache := make([]int, nStacks)
	for s := range nStacks {
		d := depth - 5 + rng.IntN(11)
		st := append([]uint64(nil), head...)
		for len(st) < d {
			st = append(st, addrs[rng.IntN(len(addrs))])
		}
		snap.Stacks[tracer.StackID(s)] = st
		stackCache[s] = rng.IntN(len(caches))
	}

	snap.Records = make([]tracer.Record, nRecords)
	totals := make(map[tracer.Key]*tracer.Total)
	for i := range snap.Records {
		// Exponentially distributed stack popularity.
		s := min(int(rng.ExpFloat64()*float64(nStacks)/6), nStacks-1)
		if rng.IntN(1000) == 0 {
			s = -1 - rng.IntN(3) // a few lost stacks
		}
		c := 0
		if s >= 0 {
			c = stackCache[s]
		}
		if rng.IntN(10) == 0 {
			c = rng.IntN(len(caches))
		}
		pid := uint32(1000 + rng.IntN(nPIDs))
		k := tracer.Key{
			Kind: tracer.KindSlab, Stack: tracer.StackID(s), Cache: caches[c],
			Comm: fmt.Sprintf("proc%d", pid), PID: pid, CgroupID: uint64(pid % 8),
		}
		snap.Records[i] = tracer.Record{
			Key: k, Addr: 0xffff888000000000 + uint64(i)*64, BytesReq: sizes[c] - uint64(rng.IntN(int(sizes[c]/2+1))),
			BytesAlloc: sizes[c], Time: snap.Meta.Start.Add(time.Duration(rng.IntN(60)) * time.Second).UnixNano(),
			Accounted: rng.IntN(4) == 0,
		}
		t := totals[k]
		if t == nil {
			t = &tracer.Total{Key: k}
			totals[k] = t
		}
		t.Count += 3
		t.Bytes += 3 * sizes[c]
	}
	for _, t := range totals {
		snap.Totals = append(snap.Totals, *t)
	}
	return snap, sym
}

// BenchmarkBuildProfile1M measures what `kmemprof record` does at the end of
// a busy capture: aggregate a million outstanding allocations, build the
// profile and encode it. The cost follows the number of samples (distinct
// keys) more than the number of records, so it runs with allocations spread
// over 32 processes (about 190,000 samples) and over 4 (about 40,000).
// Besides time and allocation per op it reports the peak heap growth of one
// op on top of the snapshot.
func BenchmarkBuildProfile1M(b *testing.B) {
	for _, pids := range []int{32, 4} {
		b.Run(fmt.Sprintf("pids=%d", pids), func(b *testing.B) {
			snap, sym := benchSnapshot(1_000_000, 5_000, 20, 20_000, 200_000, pids)
			benchBuild(b, snap, sym)
		})
	}
}

func benchBuild(b *testing.B, snap *tracer.Snapshot, sym tracer.Symbolizer) {
	opt := tracer.Options{MinAge: 5 * time.Second}
	var samples int
	op := func() {
		agg, err := tracer.Aggregate(snap, sym, opt)
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
		samples = len(p.Sample)
	}

	b.ResetTimer()
	for b.Loop() {
		op()
	}
	b.StopTimer()
	b.ReportMetric(float64(len(snap.Records))*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(samples), "samples")
	b.ReportMetric(peakHeap(op)/(1<<20), "peak-MB")
}

// peakHeap runs op once and returns by how much the heap grew at most,
// sampling it every millisecond. The collector runs at GOGC=10 meanwhile so
// that the peak is close to what op keeps live rather than to how much
// garbage the pacer lets pile up on top of the snapshot.
func peakHeap(op func()) float64 {
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	base := s[0].Value.Uint64()
	peak := base

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				metrics.Read(s) // does not stop the world
				peak = max(peak, s[0].Value.Uint64())
			}
		}
	})
	op()
	close(stop)
	wg.Wait()
	return float64(peak - base)
}
