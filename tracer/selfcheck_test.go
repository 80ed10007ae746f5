package tracer_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/kmemprof/kmemprof/tracer"
)

// counterValue returns the value of the named counter and whether it is
// there.
func counterValue(cs []tracer.Counter, name string) (uint64, bool) {
	for _, c := range cs {
		if c.Name == name {
			return c.Value, true
		}
	}
	return 0, false
}

func TestRunSelfCheck(t *testing.T) {
	// A cache whose figures leave no slack but the base one.
	cache := func(tracked, before, after, start uint64) tracer.SelfCheckCache {
		return tracer.SelfCheckCache{Name: "filp", Tracked: tracked, Before: before, After: after, Start: start, HasStart: true}
	}
	base := uint64(tracer.SelfCheckBaseSlack)
	type want struct {
		verdict          tracer.SelfCheckVerdict // 0: no finding
		excess           uint64
		over, growth     uint64
		growthCounted    bool
		kernel, trackedF uint64
		unseenWhy        string // SelfCheckInput.UnseenWhy
	}
	counted := func(c tracer.SelfCheckCache, n uint64) tracer.SelfCheckCache { c.Counted = n; return c }
	pending := func(c tracer.SelfCheckCache, n uint64) tracer.SelfCheckCache { c.Pending = n; return c }
	tests := []struct {
		name   string
		c      tracer.SelfCheckCache
		growth bool
		want   want
	}{
		{"agree", cache(900, 1000, 1000, 100), true, want{growthCounted: true}},
		{"over within the base slack", cache(1000+base, 1000, 1000, 1000), true, want{growthCounted: true}},
		{"over beyond the slack", cache(1000+base+1, 1000, 1000, 1000), true,
			want{verdict: tracer.OverKernel, excess: base + 1, over: base + 1, growthCounted: true, kernel: 1000, trackedF: 1000 + base + 1}},
		{"over: the larger reading counts", cache(2000+base, 1000, 2000, 2000), true, want{growthCounted: true}},
		{"over: the change between readings is slack", cache(1500+base, 1000, 1400, 1400), true, want{growthCounted: true}},
		{"over: per-CPU caches are slack", tracer.SelfCheckCache{Name: "filp", Tracked: 1500 + base, Before: 1000, After: 1000, Cached: 500}, false, want{}},
		{"over: a filter does not stop it", cache(20000, 1000, 1000, 1000), false,
			want{verdict: tracer.OverKernel, excess: 19000, over: 19000, kernel: 1000, trackedF: 20000}},
		{"growth matched", cache(5000, 5100, 5100, 100), true, want{growthCounted: true}},
		{"growth within the slack", cache(5000, 5100+base, 5100+base, 100), true, want{growthCounted: true}},
		{"growth beyond what is tracked", cache(5000, 20100, 20100, 100), true,
			want{verdict: tracer.GrowthUntracked, excess: 15000, growth: 15000, growthCounted: true, kernel: 20000, trackedF: 5000}},
		{"growth: the smaller reading counts", cache(5000, 5100, 9000, 100), true, want{growthCounted: true}},
		{"growth: per-CPU caches are slack", tracer.SelfCheckCache{Name: "filp", Tracked: 5000, Before: 5600, After: 5600, Start: 100, HasStart: true, Cached: 500}, true, want{growthCounted: true}},
		{"growth not compared when filtered", cache(5000, 20100, 20100, 100), false, want{}},
		{"growth not compared without a start", tracer.SelfCheckCache{Name: "filp", Tracked: 5000, Before: 20100, After: 20100}, true, want{growthCounted: true}},
		{"shrank", cache(0, 100, 100, 20000), true, want{growthCounted: true}},
		{"growth of a cache with nothing tracked, every path hooked: a loss", cache(0, 20100, 20100, 100), true,
			want{verdict: tracer.GrowthUntracked, excess: 20000, growth: 20000, growthCounted: true, kernel: 20000}},
		{"growth of a cache with nothing tracked, a path without a hook: a note", cache(0, 20100, 20100, 100), true,
			want{verdict: tracer.GrowthUnseen, excess: 20000, growthCounted: true, kernel: 20000, unseenWhy: "no hook"}},
		{"growth explained by objects counted, not tracked: a note", counted(cache(5000, 20100, 20100, 100), 15000), true,
			want{verdict: tracer.GrowthCounted, excess: 15000, growthCounted: true, kernel: 20000, trackedF: 5000}},
		{"growth within objects freed by kfree_rcu, not yet by the kernel", pending(cache(5000, 7100, 7100, 100), 2000), true, want{growthCounted: true}},
		{"growth beyond what is tracked and counted: a loss", counted(cache(5000, 30100, 30100, 100), 15000), true,
			want{verdict: tracer.GrowthUntracked, excess: 25000, growth: 25000, growthCounted: true, kernel: 30000, trackedF: 5000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tracer.RunSelfCheck(tracer.SelfCheckInput{Caches: []tracer.SelfCheckCache{tt.c}, Growth: tt.growth, NoGrowth: "a filter",
				CountedPath: "kmem_cache_alloc_bulk", UnseenWhy: tt.want.unseenWhy})
			var got tracer.SelfCheckFinding
			switch len(r.Findings) {
			case 0:
			case 1:
				got = r.Findings[0]
			default:
				t.Fatalf("findings %+v, want at most one", r.Findings)
			}
			if got.Verdict != tt.want.verdict || got.Excess != tt.want.excess {
				t.Errorf("finding %+v, want verdict %d, excess %d", got, tt.want.verdict, tt.want.excess)
			}
			if got.Verdict != 0 && (got.KernelCount != tt.want.kernel || got.Tracked != tt.want.trackedF || got.Cache != "filp") {
				t.Errorf("finding %+v, want kernel %d, tracked %d", got, tt.want.kernel, tt.want.trackedF)
			}
			cs := r.Counters()
			if v, ok := counterValue(cs, tracer.CounterSelfCheckOverKernel); !ok || v != tt.want.over {
				t.Errorf("%s = %d (%v), want %d", tracer.CounterSelfCheckOverKernel, v, ok, tt.want.over)
			}
			v, ok := counterValue(cs, tracer.CounterSelfCheckGrowthUntracked)
			if ok != tt.want.growthCounted || v != tt.want.growth {
				t.Errorf("%s = %d (present %v), want %d (present %v)", tracer.CounterSelfCheckGrowthUntracked, v, ok, tt.want.growth, tt.want.growthCounted)
			}
			for _, c := range cs {
				if !c.Loss || !c.Gauge || c.Help == "" {
					t.Errorf("counter %+v: want a described loss, a figure of the instant (Gauge)", c)
				}
			}
		})
	}
}

func TestSelfCheckPages(t *testing.T) {
	for _, tt := range []struct {
		tracked uint64
		want    uint64
	}{{1 << 30, 0}, {2<<30 + 16<<20, 0}, {3 << 30, 1 << 30}} {
		r := tracer.RunSelfCheck(tracer.SelfCheckInput{Pages: &tracer.SelfCheckPages{Tracked: tt.tracked, InUse: 2 << 30, Slack: 16 << 20}})
		if v, ok := counterValue(r.Counters(), tracer.CounterSelfCheckPagesOverKernel); !ok || v != tt.want {
			t.Errorf("tracked %d of 2 GiB in use: %s = %d (%v), want %d", tt.tracked, tracer.CounterSelfCheckPagesOverKernel, v, ok, tt.want)
		}
		if tt.want > 0 && (len(r.Findings) != 1 || !strings.HasPrefix(r.Findings[0].String(), "! self-check pages: 3.0 GiB of page allocations tracked, the kernel has 2.0 GiB in use")) {
			t.Errorf("findings %v", r.Findings)
		}
	}
	r := tracer.RunSelfCheck(tracer.SelfCheckInput{})
	if _, ok := counterValue(r.Counters(), tracer.CounterSelfCheckPagesOverKernel); ok {
		t.Error("pages counted without a page comparison")
	}
}

// TestSelfCheckLines: losses first, largest first, "!"-marked; notes after
// them; at most eight lines of findings, then the line that says what was
// compared, when, and what was not.
func TestSelfCheckLines(t *testing.T) {
	var caches []tracer.SelfCheckCache
	for i := 0; i < 10; i++ {
		caches = append(caches, tracer.SelfCheckCache{Name: "c" + string(rune('a'+i)), Tracked: uint64(1000 * (i + 1)), HasStart: true})
	}
	caches = append(caches,
		tracer.SelfCheckCache{Name: "maple_node", Tracked: 0, Before: 50000, After: 50000, Start: 100, HasStart: true},
		tracer.SelfCheckCache{Name: "kmalloc-64", Kernel: []string{"kmalloc-64", "kmalloc-rnd-01-64"}, Tracked: 12000, Before: 2113, After: 2000, Start: 2000, HasStart: true})
	taken := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)
	r := tracer.RunSelfCheck(tracer.SelfCheckInput{Taken: taken, Source: "/proc/slabinfo", Caches: caches, Growth: true,
		Unmatched: map[string]uint64{"kmalloc-72": 3}, UnseenWhy: "kmem_cache_alloc_bulk is not hooked"})
	lines := r.Lines()
	for _, l := range lines {
		t.Log(l)
	}
	if len(lines) != 10 {
		t.Fatalf("%d lines, want 8 findings, the rest counted, the summary line", len(lines))
	}
	if !strings.HasPrefix(lines[0], "! self-check cj: 10,000 objects tracked, the kernel holds 0") {
		t.Errorf("first line %q: want the largest excess", lines[0])
	}
	if want := "! self-check kmalloc-64 (kmalloc-64+kmalloc-rnd-01-64): 12,000 objects tracked, the kernel holds 2,113 (frees missed: 9,887 tracked objects are gone)"; lines[1] != want {
		t.Errorf("second line\n%q, want\n%q", lines[1], want)
	}
	if lines[8] != "  self-check: and 4 more" {
		t.Errorf("line 9 %q", lines[8])
	}
	last := lines[9]
	for _, w := range []string{"self-check: tracked objects and growth of 12 caches against /proc/slabinfo at 03:04:05.006, programs attached: 11 contradict",
		"not in /proc/slabinfo, not compared: kmalloc-72 3"} {
		if !strings.Contains(last, w) {
			t.Errorf("last line %q lacks %q", last, w)
		}
	}
	// The note comes after every loss.
	if f := r.Findings[len(r.Findings)-1]; f.Verdict != tracer.GrowthUnseen || f.Loss() || strings.HasPrefix(f.String(), "!") {
		t.Errorf("last finding %+v (%q): want the note on maple_node, not a loss", f, f.String())
	}

	r = tracer.RunSelfCheck(tracer.SelfCheckInput{Taken: taken, Source: "/proc/slabinfo", NoGrowth: "a filter keeps only some allocations",
		Caches: []tracer.SelfCheckCache{{Name: "filp", Tracked: 1, Before: 5, After: 5}}})
	if l := r.Lines(); len(l) != 1 || !strings.Contains(l[0], "tracked objects of 1 caches") || !strings.Contains(l[0], "all agree; growth not compared (a filter keeps only some allocations)") {
		t.Errorf("lines %q", l)
	}
}

// TestSelfCheckInSummary: Apply puts the counters among the snapshot's and
// the lines in the summary and the profile comments.
func TestSelfCheckInSummary(t *testing.T) {
	snap := &tracer.Snapshot{
		Stacks:  map[tracer.StackID][]uint64{1: {0xffffffff81000000}},
		Records: []tracer.Record{{Key: tracer.Key{Kind: tracer.KindSlab, Stack: 1, Cache: "filp"}, BytesAlloc: 192}},
	}
	r := tracer.RunSelfCheck(tracer.SelfCheckInput{Source: "/proc/slabinfo", Growth: true,
		Caches: []tracer.SelfCheckCache{{Name: "filp", Tracked: 12000, Before: 2113, After: 2113, Start: 2000, HasStart: true}}})
	r.Apply(snap)
	agg, err := tracer.Aggregate(snap, nil, tracer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := agg.WriteSummary(&buf, 5); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	line := "! self-check filp: 12,000 objects tracked, the kernel holds 2,113 (frees missed: 9,887 tracked objects are gone)"
	for _, w := range []string{"selfcheck_over_kernel=9887", "selfcheck_growth_untracked=0", "! selfcheck_over_kernel", line, "self-check: tracked objects and growth of 1 caches"} {
		if !strings.Contains(out, w) {
			t.Errorf("summary lacks %q:\n%s", w, out)
		}
	}
	prof, err := agg.Profile()
	if err != nil {
		t.Fatal(err)
	}
	comments := strings.Join(prof.Comments, "\n")
	for _, w := range []string{"selfcheck_over_kernel=9887", "loss selfcheck_over_kernel=9887", line} {
		if !strings.Contains(comments, w) {
			t.Errorf("comments lack %q:\n%s", w, comments)
		}
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[uint64]string{0: "0", 999: "999", 1000: "1,000", 12000: "12,000", 1234567: "1,234,567", 100000: "100,000"} {
		if got := tracer.Thousands(n); got != want {
			t.Errorf("Thousands(%d) = %q, want %q", n, got, want)
		}
	}
}
