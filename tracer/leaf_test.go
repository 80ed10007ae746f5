package tracer_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/kmemprof/kmemprof/tracer"
)

// Addresses of a small kernel: a BPF program and trampoline (tracing
// frames), an allocator function and its callers.
const (
	lfProg   = 0xffffffffa0001010
	lfTramp  = 0xffffffffa0002020
	lfAlloc  = 0xffffffff81300000 // kmem_cache_alloc_noprof's first byte
	lfAlloc5 = 0xffffffff81300005 // the same function, as a trampoline's return address
	lfDAlloc = 0xffffffff81400040 // __d_alloc+0x40, a return address
	lfCaller = 0xffffffff81500080 // d_alloc_pseudo+0x80
)

func leafSymbolizer() tracer.Symbolizer {
	return symbolizerFunc(func(addr uint64) (tracer.Symbol, bool) {
		switch {
		case addr >= lfProg && addr < lfProg+0x100:
			return tracer.Symbol{Name: "bpf_prog_0123456789abcdef_fx_alloc_2", Start: addr, Module: "bpf"}, true
		case addr >= lfTramp-0x10 && addr < lfTramp+0x100:
			return tracer.Symbol{Name: "bpf_trampoline_6442", Start: addr, Module: "bpf"}, true
		case addr >= lfAlloc && addr < lfAlloc+0x100:
			return tracer.Symbol{Name: "kmem_cache_alloc_noprof", Start: lfAlloc}, true
		case addr >= 0xffffffff81400000 && addr < 0xffffffff81400100:
			return tracer.Symbol{Name: "__d_alloc", Start: 0xffffffff81400000}, true
		case addr >= 0xffffffff81500000 && addr < 0xffffffff81500100:
			return tracer.Symbol{Name: "d_alloc_pseudo", Start: 0xffffffff81500000}, true
		}
		return tracer.Symbol{}, false
	})
}

type symbolizerFunc func(pc uint64) (tracer.Symbol, bool)

func (f symbolizerFunc) Lookup(pc uint64) (tracer.Symbol, bool) { return f(pc) }

// TestLeafFunction checks that the allocator function a stack was walked
// below becomes its leaf where the walk does not show it (an fexit program
// on newer kernels, a kretprobe), and is not repeated where it does.
func TestLeafFunction(t *testing.T) {
	now := time.Unix(5000, 0)
	snap := &tracer.Snapshot{
		Platform: testPlatform,
		Taken:    now,
		Stacks: map[tracer.StackID][]uint64{
			1: {lfProg, lfTramp, lfDAlloc, lfCaller},           // the allocator's frame is gone
			2: {lfProg, lfTramp, lfAlloc5, lfDAlloc, lfCaller}, // the allocator's frame is there
			3: {lfDAlloc},                                      // a call site only (stack not walked)
		},
		Partial: map[tracer.StackID]bool{3: true},
		Leaf:    map[tracer.StackID]uint64{1: lfAlloc, 2: lfAlloc, 3: lfAlloc},
	}
	for id := tracer.StackID(1); id <= 3; id++ {
		snap.Records = append(snap.Records, tracer.Record{
			Key:        tracer.Key{Kind: tracer.KindSlab, Stack: id, Cache: "dentry"},
			BytesAlloc: 192, BytesReq: 192, Time: now.Add(-time.Minute).UnixNano(),
		})
	}
	agg, err := tracer.Aggregate(snap, leafSymbolizer(), tracer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[tracer.StackID]string{
		1: "kmem_cache_alloc_noprof < __d_alloc < d_alloc_pseudo",
		2: "kmem_cache_alloc_noprof < __d_alloc < d_alloc_pseudo",
		3: "kmem_cache_alloc_noprof < __d_alloc < " + tracer.NotWalkedName,
	}
	for _, s := range agg.Samples {
		var names []string
		for _, f := range s.Frames {
			names = append(names, f.Function)
		}
		if got := strings.Join(names, " < "); got != want[s.Stack] {
			t.Errorf("stack %d: %s, want %s", s.Stack, got, want[s.Stack])
		}
	}
}

// TestTrampolineInsideStack checks that a BPF trampoline in the middle of
// a stack (a new slab's pages, allocated inside a kmem_cache_alloc hooked
// by fexit: the trampoline lies between the allocator's body and its entry)
// is dropped, so that the frame past the allocator is its real caller, and
// that a stack of nothing else is kept whole.
func TestTrampolineInsideStack(t *testing.T) {
	now := time.Unix(5000, 0)
	snap := &tracer.Snapshot{
		Platform: testPlatform,
		Taken:    now,
		Stacks: map[tracer.StackID][]uint64{
			1: {lfProg, lfAlloc5 + 0x40, lfTramp, lfAlloc5, lfDAlloc, lfCaller},
			2: {lfTramp},
			3: {lfAlloc5, lfTramp, lfDAlloc}, // a call site and the frames read with it
		},
		Partial: map[tracer.StackID]bool{3: true},
	}
	for id := tracer.StackID(1); id <= 3; id++ {
		snap.Records = append(snap.Records, tracer.Record{
			Key:        tracer.Key{Kind: tracer.KindPage, Stack: id},
			BytesAlloc: 16384, Time: now.Add(-time.Minute).UnixNano(),
		})
	}
	agg, err := tracer.Aggregate(snap, leafSymbolizer(), tracer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[tracer.StackID]string{
		1: "kmem_cache_alloc_noprof < kmem_cache_alloc_noprof < __d_alloc < d_alloc_pseudo",
		2: "bpf_trampoline_6442",
		3: "kmem_cache_alloc_noprof < __d_alloc < " + tracer.NotWalkedName,
	}
	if len(agg.Samples) != len(want) {
		t.Fatalf("%d samples, want %d", len(agg.Samples), len(want))
	}
	for _, s := range agg.Samples {
		var names []string
		for _, f := range s.Frames {
			names = append(names, f.Function)
		}
		if got := strings.Join(names, " < "); got != want[s.Stack] {
			t.Errorf("stack %d: %s, want %s", s.Stack, got, want[s.Stack])
		}
	}
	var sum bytes.Buffer
	if err := agg.WriteSummary(&sum, 10); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sum.String(), "bpf_trampoline_6442 < ") {
		t.Errorf("the summary shows a trampoline inside a stack:\n%s", sum.String())
	}
}

// TestUntracedFrees checks that caches some of whose frees were not seen are
// marked in the summary, labelled in the profile and listed in its comments.
func TestUntracedFrees(t *testing.T) {
	now := time.Unix(5000, 0)
	snap := &tracer.Snapshot{
		Platform:      testPlatform,
		Taken:         now,
		Stacks:        map[tracer.StackID][]uint64{1: {lfAlloc, lfDAlloc, lfCaller}},
		UntracedFrees: map[string]uint64{"maple_node": 7114, "kmalloc-64": 3},
	}
	for _, c := range []string{"maple_node", "dentry"} {
		snap.Records = append(snap.Records, tracer.Record{
			Key:        tracer.Key{Kind: tracer.KindSlab, Stack: 1, Cache: c},
			BytesAlloc: 256, Time: now.Add(-time.Minute).UnixNano(),
		})
	}
	agg, err := tracer.Aggregate(snap, leafSymbolizer(), tracer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var sum bytes.Buffer
	if err := agg.WriteSummary(&sum, 10); err != nil {
		t.Fatal(err)
	}
	out := sum.String()
	for _, w := range []string{"maple_node (frees untraced)", "maple_node 7114, kmalloc-64 3"} {
		if !strings.Contains(out, w) {
			t.Errorf("summary lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "dentry (frees untraced)") {
		t.Errorf("dentry marked although its frees were all seen:\n%s", out)
	}

	p, err := agg.Profile()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := p.Write(&buf); err != nil {
		t.Fatal(err)
	}
	back, err := profile.Parse(&buf)
	if err != nil {
		t.Fatal(err)
	}
	labelled := map[string]bool{}
	for _, s := range back.Sample {
		if len(s.Label[tracer.LabelUntraced]) > 0 {
			labelled[s.Label[tracer.LabelCache][0]] = true
		}
	}
	if !labelled["maple_node"] || labelled["dentry"] {
		t.Errorf("frees_untraced labels on %v, want maple_node only", labelled)
	}
	if !strings.Contains(strings.Join(back.Comments, "\n"), "frees untraced") {
		t.Errorf("comments do not list the caches with untraced frees: %q", back.Comments)
	}
}
