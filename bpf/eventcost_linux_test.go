package bpf

import (
	"fmt"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/kmemprof/kmemprof/bpf/bpftest"
)

// BenchmarkEventCost splits what tracing costs an allocation into the
// kernel's part and kmemprof's, in one run. Each round times the same loop of
// open and close of /dev/null (on 6.18: 3 slab allocations and 3 frees per
// iteration) untraced; with an empty raw_tp program on each of the four slab
// tracepoints the default mode hooks (the kernel's dispatch alone: the floor
// any raw tracepoint tool pays); with a second empty program on each (what a
// free hook's backup program costs); and with kmemprof in the default mode
// (backups from the start, and lazily) and in full mode. It reports the
// medians in ns per iteration and as ratios to the untraced loop. Run it
// with -benchtime Nx for N rounds.
func BenchmarkEventCost(b *testing.B) {
	bpftest.Require(b)
	const iters = 100000
	configs := []struct {
		name  string
		start func(testing.TB) func()
	}{
		{"untraced", func(testing.TB) func() { return func() {} }},
		{"floor", func(tb testing.TB) func() { return attachEmpty(tb, 1) }},
		{"floor-backups", func(tb testing.TB) func() { return attachEmpty(tb, 2) }},
		{"adaptive", func(tb testing.TB) func() { return openTracer(tb, Config{}) }},
		{"lazy", func(tb testing.TB) func() { return openTracer(tb, Config{LazyBackups: true}) }},
		{"full", func(tb testing.TB) func() { return openTracer(tb, Config{Tracking: TrackFull}) }},
	}
	times := map[string][]float64{}
	for b.Loop() {
		for _, c := range configs {
			stop := c.start(b)
			times[c.name] = append(times[c.name], bpftest.OpenClose(b, iters))
			stop()
		}
	}
	base := median(times["untraced"])
	for _, c := range configs {
		m := median(times[c.name])
		b.ReportMetric(m, c.name+"-ns/iter")
		if c.name != "untraced" {
			b.ReportMetric(m/base, c.name+"-ratio")
		}
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// attachEmpty attaches an empty raw_tp program to each slab allocation
// tracepoint and frees empty programs to each free tracepoint.
func attachEmpty(tb testing.TB, frees int) func() {
	var closers []func() error
	for _, tp := range []string{"kmem_cache_alloc", "kmem_cache_free", "kmalloc", "kfree"} {
		n := 1
		if tp == "kmem_cache_free" || tp == "kfree" {
			n = frees
		}
		for i := range n {
			prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
				Name: fmt.Sprintf("empty%d", i), Type: ebpf.RawTracepoint, License: "GPL",
				Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
			})
			if err != nil {
				tb.Fatal(err)
			}
			l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp, Program: prog})
			if err != nil {
				prog.Close()
				tb.Fatal(err)
			}
			closers = append(closers, l.Close, prog.Close)
		}
	}
	return func() {
		for _, c := range closers {
			c()
		}
	}
}

func openTracer(tb testing.TB, cfg Config) func() {
	tr, err := Open(cfg)
	if err != nil {
		tb.Fatalf("Open: %+v", err)
	}
	return func() { tr.Close() }
}
