package tracer

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The self-check compares what a capture tracks with the kernel's own
// counts of its objects, taken at the same instant: the backend reads the
// kernel's count of every slab cache (pool tag) just before and just after
// it reads its outstanding table, programs still attached, so that the
// tracked figure sits between two kernel readings. Two things cannot be:
//
//   - more objects tracked in a cache than the kernel holds in it: those
//     objects' frees were missed, and they show as leaks although they are
//     gone (false leaks): counter CounterSelfCheckOverKernel;
//   - when every allocation is traced (no filter, no sampling): the
//     kernel's count grown since the capture started by more than the
//     objects tracked in the cache, since every object allocated since the
//     start and not freed is tracked: allocations were missed (leaks the
//     profile cannot show): counter CounterSelfCheckGrowthUntracked.
//
// Neither holds exactly, so both are tested with a slack: the kernel's
// count includes free objects its allocator keeps per CPU (SelfCheckCache.
// Cached), objects come and go between the two readings, and the tracer's
// own allocations (which it never traces) grow the kernel's count. A cache
// that grew although not one of its outstanding objects is tracked grows
// through a path the tracer has no hook for (Linux's
// kmem_cache_alloc_bulk, which has no tracepoint): it is reported as a
// note, not a loss.

// Names of the self-check's counters (SelfCheck.Counters).
const (
	CounterSelfCheckOverKernel      = "selfcheck_over_kernel"
	CounterSelfCheckGrowthUntracked = "selfcheck_growth_untracked"
	CounterSelfCheckPagesOverKernel = "selfcheck_pages_over_kernel"
)

// SelfCheckBaseSlack is the slack, in objects, every cache is allowed
// beyond its allocator's per-CPU caches and the change between the two
// readings: the tracer's own allocations since the start (its process is
// never traced) and objects made while the figures were read.
const SelfCheckBaseSlack = 64

// SelfCheckCache is one slab cache (a pool tag on Windows) as SelfCheck
// compares it: the objects the tracer holds outstanding, and the kernel's
// count of the cache's objects in use.
type SelfCheckCache struct {
	// Name is the cache as the profile names it (filp, kmalloc-64).
	Name string
	// Kernel lists the kernel's own entries summed for it, when they are
	// more than Name (kmalloc-64 with the random kmalloc-rnd-01-64...), for
	// the messages; nil: Name alone.
	Kernel []string
	// Tracked is how many of the cache's objects the tracer held
	// outstanding at the check's instant (records, not scaled by sampling).
	Tracked uint64
	// Before and After are the kernel's count of the cache's objects in
	// use just before and just after Tracked was read.
	Before, After uint64
	// Start is the kernel's count when the capture started (0 for a cache
	// made since); HasStart says it is known.
	Start    uint64
	HasStart bool
	// Cached is how many free objects the kernel's count may include: the
	// objects its allocator keeps for each CPU, which it counts as in use
	// (on Linux, SLUB's per-CPU slabs and partial slabs, and sheaves).
	Cached uint64
	// Pending is how many of the cache's objects the tracer saw freed in
	// the last seconds by a deferred free that the kernel completes later
	// (Linux's kfree_rcu, drained in batches up to seconds later): the
	// kernel may still count them as in use, so growth up to them is
	// allowed.
	Pending uint64
	// Counted is how many of the cache's objects the tracer saw allocated
	// since the start through a path whose objects it counts but does not
	// track (SelfCheckInput.CountedPath): growth up to it is explained.
	Counted uint64
}

// slack is how far the cache's figures may disagree without a
// contradiction: its allocator's per-CPU caches, the change between the two
// readings, and SelfCheckBaseSlack.
func (c SelfCheckCache) slack() uint64 {
	return c.Cached + absDiff(c.Before, c.After) + SelfCheckBaseSlack
}

// SelfCheckInput is what SelfCheck compares.
type SelfCheckInput struct {
	// Taken is when the tracer's table was read.
	Taken time.Time
	// Source names where the kernel's counts come from, for the messages
	// ("/proc/slabinfo").
	Source string
	// Caches are the caches to compare, one entry per comparable group of
	// the kernel's caches.
	Caches []SelfCheckCache
	// Growth says every allocation is traced (no filter, no sampling), so
	// that the growth comparison holds; NoGrowth says why not, when not.
	Growth   bool
	NoGrowth string
	// Pages, when set, compares the bytes the tracer holds from the page
	// allocator with the memory in use.
	Pages *SelfCheckPages
	// Unmatched are tracked caches the kernel's counts do not list (name
	// -> objects): they cannot be compared, and are reported as a note.
	Unmatched map[string]uint64
	// CountedPath names the allocation path whose objects the tracer
	// counts without tracking them ("kmem_cache_alloc_bulk"), for the notes
	// of growth it explains (SelfCheckCache.Counted).
	CountedPath string
	// UnseenWhy, when not empty, says why a cache's growth with nothing of
	// it tracked and nothing counted (GrowthUnseen) may come from a path the
	// tracer cannot hook on this kernel: it is then a note. When empty the
	// tracer hooks (or counts) every allocation path, and such growth is a
	// loss like any other.
	UnseenWhy string
}

// SelfCheckPages compares memory taken from the page allocator.
type SelfCheckPages struct {
	// Tracked is the bytes of outstanding page allocations (and large
	// kmallocs) the tracer holds.
	Tracked uint64
	// InUse is the kernel's memory in use, the larger of the two readings
	// (on Linux MemTotal - MemFree): no tracked page can be outside it.
	InUse uint64
	// Slack is how much Tracked may exceed InUse without a contradiction.
	Slack uint64
}

// SelfCheckVerdict is what one finding of the self-check says.
type SelfCheckVerdict uint8

const (
	// OverKernel: more objects tracked than the kernel holds (frees missed).
	OverKernel SelfCheckVerdict = iota + 1
	// GrowthUntracked: the kernel's count grew by more than what is
	// tracked (allocations missed).
	GrowthUntracked
	// GrowthUnseen: the kernel's count grew, and not one outstanding object
	// of the cache is tracked, on a kernel where the tracer cannot hook
	// every allocation path (SelfCheckInput.UnseenWhy). A note, not a loss.
	GrowthUnseen
	// GrowthCounted: the kernel's count grew by more than is tracked, but
	// no more than is tracked and counted through a path whose objects the
	// tracer counts without tracking them. A note, not a loss.
	GrowthCounted
	// PagesOverKernel: more page memory tracked than is in use.
	PagesOverKernel
)

// SelfCheckFinding is one contradiction (or, for GrowthUnseen, one
// unexplained growth) of the self-check.
type SelfCheckFinding struct {
	Verdict SelfCheckVerdict
	// Cache is the cache's name ("" for PagesOverKernel); Kernel lists
	// the kernel entries summed for it (SelfCheckCache.Kernel).
	Cache  string
	Kernel []string
	// Tracked is the tracer's figure; Kernel is the kernel's: its count
	// (OverKernel: the larger reading; PagesOverKernel: bytes in use) or
	// its growth since the start (GrowthUntracked, GrowthUnseen).
	Tracked, KernelCount uint64
	// Slack is what was allowed; Excess is by how much the figures
	// disagree (Tracked - KernelCount, or KernelCount - Tracked for growth).
	Slack, Excess uint64
	// Counted is the cache's SelfCheckCache.Counted; Why, for a note, the
	// path or the reason (SelfCheckInput.CountedPath, UnseenWhy).
	Counted uint64
	Why     string
}

// Loss says whether the finding means data is missing or wrong.
func (f SelfCheckFinding) Loss() bool { return f.Verdict != GrowthUnseen && f.Verdict != GrowthCounted }

// String is the finding's line in the summary and the profile comments,
// "!"-marked when it is a loss.
func (f SelfCheckFinding) String() string {
	name := f.Cache
	if len(f.Kernel) > 1 {
		name += " (" + strings.Join(f.Kernel, "+") + ")"
	}
	switch f.Verdict {
	case OverKernel:
		return fmt.Sprintf("! self-check %s: %s objects tracked, the kernel holds %s (frees missed: %s tracked objects are gone)",
			name, Thousands(f.Tracked), Thousands(f.KernelCount), Thousands(f.Excess))
	case GrowthUntracked:
		return fmt.Sprintf("! self-check %s: the kernel's count grew by %s objects since the start, %s tracked (allocations missed: %s)",
			name, Thousands(f.KernelCount), Thousands(f.Tracked), Thousands(f.Excess))
	case GrowthUnseen:
		return fmt.Sprintf("  self-check %s: the kernel's count grew by %s objects since the start and none is tracked: its allocations may take a path kmemprof cannot hook here (%s; not counted as a loss)",
			name, Thousands(f.KernelCount), f.Why)
	case GrowthCounted:
		return fmt.Sprintf("  self-check %s: the kernel's count grew by %s objects since the start, %s tracked; %s were allocated through %s, whose objects kmemprof counts but does not track (not counted as a loss)",
			name, Thousands(f.KernelCount), Thousands(f.Tracked), Thousands(f.Counted), f.Why)
	case PagesOverKernel:
		return fmt.Sprintf("! self-check pages: %s of page allocations tracked, the kernel has %s in use (frees missed)",
			HumanBytes(f.Tracked), HumanBytes(f.KernelCount))
	}
	return fmt.Sprintf("self-check %s: verdict %d", name, f.Verdict)
}

// SelfCheck is the result of a self-check (RunSelfCheck), kept in the
// snapshot it was made for (Snapshot.SelfCheck).
type SelfCheck struct {
	// Taken is when the tracer's table was read.
	Taken time.Time
	// Source names where the kernel's counts came from.
	Source string
	// Compared counts the caches compared.
	Compared int
	// Growth says the growth comparison was made; NoGrowth says why not.
	Growth   bool
	NoGrowth string
	// Pages says the page comparison was made.
	Pages bool
	// Findings are the contradictions, largest first, then the notes.
	Findings []SelfCheckFinding
	// Unmatched are tracked caches the kernel's counts do not list.
	Unmatched map[string]uint64
	// Printed, when set, are the lines of a self-check read back from a
	// profile's comments (FromProfile): Lines returns them as they are.
	Printed []string
}

// RunSelfCheck compares the tracked figures of in with the kernel's (see
// the rules at the top of this file) and returns what it found.
func RunSelfCheck(in SelfCheckInput) *SelfCheck {
	r := &SelfCheck{Taken: in.Taken, Source: in.Source, Compared: len(in.Caches), Growth: in.Growth, NoGrowth: in.NoGrowth, Unmatched: in.Unmatched}
	for _, c := range in.Caches {
		slack := c.slack()
		kernel := max(c.Before, c.After)
		if c.Tracked > kernel+slack {
			r.Findings = append(r.Findings, SelfCheckFinding{Verdict: OverKernel, Cache: c.Name, Kernel: c.Kernel,
				Tracked: c.Tracked, KernelCount: kernel, Slack: slack, Excess: c.Tracked - kernel})
		}
		if !in.Growth || !c.HasStart {
			continue
		}
		// The smaller reading: growth that may have come and gone between
		// the readings is not held against the tracer.
		low := min(c.Before, c.After)
		if low <= c.Start {
			continue
		}
		growth := low - c.Start
		if growth <= c.Tracked+slack+c.Pending {
			continue
		}
		f := SelfCheckFinding{Verdict: GrowthUntracked, Cache: c.Name, Kernel: c.Kernel,
			Tracked: c.Tracked, KernelCount: growth, Slack: slack, Excess: growth - c.Tracked, Counted: c.Counted}
		switch {
		case c.Counted > 0 && growth <= c.Tracked+c.Counted+slack:
			f.Verdict, f.Why = GrowthCounted, in.CountedPath
		case c.Tracked == 0 && c.Counted == 0 && in.UnseenWhy != "":
			f.Verdict, f.Why = GrowthUnseen, in.UnseenWhy
		}
		r.Findings = append(r.Findings, f)
	}
	if p := in.Pages; p != nil {
		r.Pages = true
		if p.Tracked > p.InUse+p.Slack {
			r.Findings = append(r.Findings, SelfCheckFinding{Verdict: PagesOverKernel, Tracked: p.Tracked, KernelCount: p.InUse,
				Slack: p.Slack, Excess: p.Tracked - p.InUse})
		}
	}
	slices.SortStableFunc(r.Findings, func(x, y SelfCheckFinding) int {
		return cmp.Or(cmp.Compare(boolInt(!x.Loss()), boolInt(!y.Loss())), cmp.Compare(x.Verdict, y.Verdict),
			cmp.Compare(y.Excess, x.Excess), cmp.Compare(x.Cache, y.Cache))
	})
	return r
}

// Counters returns the self-check's loss counters: objects tracked beyond
// the kernel's count, summed over caches; objects the caches grew by
// beyond what is tracked (only when the growth comparison was made); page
// bytes tracked beyond the memory in use (only when compared).
func (c *SelfCheck) Counters() []Counter {
	var over, growth, pages uint64
	for _, f := range c.Findings {
		switch f.Verdict {
		case OverKernel:
			over += f.Excess
		case GrowthUntracked:
			growth += f.Excess
		case PagesOverKernel:
			pages += f.Excess
		}
	}
	src := c.Source
	if src == "" {
		src = "the kernel's counts"
	}
	out := []Counter{{
		Name: CounterSelfCheckOverKernel, Value: over, Loss: true, Gauge: true,
		Help: "objects tracked beyond what the kernel holds in their caches (" + src + ", read just before and after, programs attached): their frees were missed, they show as leaks but are gone",
	}}
	if c.Growth {
		out = append(out, Counter{
			Name: CounterSelfCheckGrowthUntracked, Value: growth, Loss: true, Gauge: true,
			Help: "objects by which caches grew since the start (" + src + ") beyond what is tracked in them: allocations missed, leaks the profile cannot show",
		})
	}
	if c.Pages {
		out = append(out, Counter{
			Name: CounterSelfCheckPagesOverKernel, Value: pages, Loss: true, Gauge: true,
			Help: "bytes of page allocations tracked beyond the memory in use: page frees missed",
		})
	}
	return out
}

// Lines returns the self-check's lines for the summary and the profile
// comments: one per finding (at most selfCheckLines, largest first),
// losses "!"-marked, then one that says what was compared.
func (c *SelfCheck) Lines() []string {
	if c.Printed != nil {
		return c.Printed
	}
	var out []string
	for i, f := range c.Findings {
		if i == selfCheckLines {
			out = append(out, fmt.Sprintf("  self-check: and %d more", len(c.Findings)-i))
			break
		}
		out = append(out, f.String())
	}
	losses := 0
	for _, f := range c.Findings {
		if f.Loss() {
			losses++
		}
	}
	src := c.Source
	if src == "" {
		src = "the kernel's counts"
	}
	what := "tracked objects"
	if c.Growth {
		what += " and growth"
	}
	verdict := "all agree"
	if losses > 0 {
		verdict = strconv.Itoa(losses) + " contradict"
	}
	line := fmt.Sprintf("self-check: %s of %d caches against %s at %s, programs attached: %s", what, c.Compared, src, c.Taken.Format("15:04:05.000"), verdict)
	if !c.Growth && c.NoGrowth != "" {
		line += "; growth not compared (" + c.NoGrowth + ")"
	}
	if len(c.Unmatched) > 0 {
		names := make([]string, 0, len(c.Unmatched))
		for n := range c.Unmatched {
			names = append(names, n)
		}
		slices.Sort(names)
		var parts []string
		for _, n := range names {
			parts = append(parts, n+" "+Thousands(c.Unmatched[n]))
		}
		line += "; not in " + src + ", not compared: " + strings.Join(parts, ", ")
	}
	return append(out, line)
}

// selfCheckLines is how many findings the summary and the comments list.
const selfCheckLines = 8

// Apply records the self-check in snap: its counters join the snapshot's
// (Meta.Counters), so that the summary and the profile comments flag them
// as losses, and the result is kept for their per-cache lines.
func (c *SelfCheck) Apply(snap *Snapshot) {
	snap.SelfCheck = c
	snap.Meta.Counters = append(snap.Meta.Counters, c.Counters()...)
}

// Thousands formats n with commas between groups of three digits: 12,000.
func Thousands(n uint64) string {
	s := strconv.FormatUint(n, 10)
	if len(s) <= 3 {
		return s
	}
	var b strings.Builder
	pre := len(s) % 3
	if pre > 0 {
		b.WriteString(s[:pre])
	}
	for i := pre; i < len(s); i += 3 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s[i : i+3])
	}
	return b.String()
}

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
