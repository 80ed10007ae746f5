package main

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/pprof/profile"

	"github.com/kmemprof/kmemprof/symbolize/host"
	"github.com/kmemprof/kmemprof/tracer"
)

// The agent's watch mode reads the kernel's own counts every interval, with
// no BPF program attached, and decides from them whether memory is leaking;
// only then does it attach, for a bounded capture that says where.

// watchRule is when the counts say "leaking".
type watchRule struct {
	// Intervals is how many intervals in a row a count must rise.
	Intervals int
	// MinBytes is how much an unreclaimable slab cache must grow in each of
	// those intervals, at least (the unreclaimable caches together:
	// Intervals times it).
	MinBytes uint64
}

// kernelReading is the part of the kernel's counts the rule looks at.
type kernelReading struct {
	At     time.Time
	Caches map[string]host.SlabCache
	Memcg  host.MemcgCount
	// lsm is the name lsm_inode_cache shows under (watcher.lsmCache), set by Add.
	lsm string
}

func readingOf(v host.SystemView) kernelReading {
	r := kernelReading{At: v.Taken, Caches: make(map[string]host.SlabCache, len(v.Caches)), Memcg: v.Memcg}
	for _, c := range v.Caches {
		r.Caches[c.Name] = c
	}
	return r
}

// cacheRise is an unreclaimable slab cache that rose in every interval of
// the rule's window.
type cacheRise struct {
	Name           string
	Bytes, Objects int64 // growth over the window
}

// watchTrigger is why a capture starts: the figures that caused it.
type watchTrigger struct {
	Intervals int
	Window    time.Duration
	Caches    []cacheRise // most growth first
	// Unreclaimable is the unreclaimable caches' growth together over the
	// window (beyond what reclaimable growth explains), when it was
	// Intervals times MinBytes or more in every interval; else 0.
	Unreclaimable int64
	Dying         int64 // dying memory cgroups added, when they rose in every interval
}

// Reason is the trigger in one word, for labels and metrics: the cache
// that grew most, or "unreclaimable_slab", or "dying_memcgs".
func (t *watchTrigger) Reason() string {
	switch {
	case len(t.Caches) > 0:
		return "cache:" + t.Caches[0].Name
	case t.Unreclaimable > 0:
		return "unreclaimable_slab"
	}
	return "dying_memcgs"
}

func (t *watchTrigger) String() string {
	var parts []string
	for i, c := range t.Caches {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("and %d more caches", len(t.Caches)-3))
			break
		}
		parts = append(parts, fmt.Sprintf("%s %s (%+d objects)", c.Name, tracer.SignedBytes(c.Bytes), c.Objects))
	}
	if t.Unreclaimable > 0 {
		parts = append(parts, "unreclaimable slab "+tracer.SignedBytes(t.Unreclaimable))
	}
	if t.Dying > 0 {
		parts = append(parts, fmt.Sprintf("dying memory cgroups %+d", t.Dying))
	}
	return fmt.Sprintf("%s rose in each of the last %d intervals (%s)", strings.Join(parts, ", "), t.Intervals, t.Window.Round(time.Second))
}

// watcher keeps the last readings and applies the rule.
type watcher struct {
	rule        watchRule
	reclaimable func(cache string) bool
	// aliases are the names SLUB merged with each cache (SlabAliases):
	// /proc/slabinfo shows a merged group under its first name only.
	aliases map[string][]string
	hist    []kernelReading // at most rule.Intervals+1, oldest first
}

// lsmCache is the name /proc/slabinfo shows lsm_inode_cache's objects
// under: its own, or the cache it was merged into.
func (w *watcher) lsmCache(r kernelReading) string {
	for name := range r.Caches {
		if name == "lsm_inode_cache" || slices.Contains(w.aliases[name], "lsm_inode_cache") {
			return name
		}
	}
	return "lsm_inode_cache"
}

// Reset forgets the readings: after a capture (its own maps and programs
// are kernel memory) growth is measured afresh.
func (w *watcher) Reset() { w.hist = w.hist[:0] }

// Add takes a reading and returns a trigger when the rule holds over the
// readings it has, nil otherwise.
func (w *watcher) Add(r kernelReading) *watchTrigger {
	r.lsm = w.lsmCache(r)
	w.hist = append(w.hist, r)
	if n := w.rule.Intervals + 1; len(w.hist) > n {
		w.hist = append(w.hist[:0], w.hist[len(w.hist)-n:]...)
	}
	if len(w.hist) < w.rule.Intervals+1 {
		return nil
	}
	first, last := w.hist[0], w.hist[len(w.hist)-1]
	t := &watchTrigger{Intervals: w.rule.Intervals, Window: last.At.Sub(first.At)}
	for name, c := range last.Caches {
		if w.reclaimable(name) || w.Streak(name) < w.rule.Intervals {
			continue
		}
		c0 := first.Caches[name]
		t.Caches = append(t.Caches, cacheRise{Name: name, Bytes: int64(c.ActiveBytes()) - int64(c0.ActiveBytes()), Objects: int64(c.ActiveObjs) - int64(c0.ActiveObjs)})
	}
	sort.Slice(t.Caches, func(i, j int) bool {
		if t.Caches[i].Bytes != t.Caches[j].Bytes {
			return t.Caches[i].Bytes > t.Caches[j].Bytes
		}
		return t.Caches[i].Name < t.Caches[j].Name
	})
	t.Unreclaimable = w.unreclaimableGrowth()

	if w.rises(func(r kernelReading) (uint64, bool) { return r.Memcg.Dying, r.Memcg.DyingKnown }, 1) {
		t.Dying = int64(last.Memcg.Dying) - int64(first.Memcg.Dying)
	}
	if len(t.Caches) == 0 && t.Unreclaimable == 0 && t.Dying == 0 {
		return nil
	}
	return t
}

// unreclaimableGrowth is the unreclaimable caches' growth together over
// the readings kept, beyond what reclaimable growth explains, when it was
// Intervals times MinBytes or more in every interval; else 0. Summed with
// their signs, so that churn up here and down there cancels out.
func (w *watcher) unreclaimableGrowth() int64 {
	var total int64
	for i := 1; i < len(w.hist); i++ {
		prev, cur := w.hist[i-1], w.hist[i]
		var sum int64
		for name, c := range cur.Caches {
			p, ok := prev.Caches[name]
			if !ok || w.reclaimable(name) {
				continue
			}
			d := int64(c.ActiveBytes()) - int64(p.ActiveBytes())
			if d > 0 {
				d = max(0, d-int64(explainedGrowth(prev, cur, name, cur.lsm)))
			}
			sum += d
		}
		if sum < int64(w.rule.Intervals)*int64(w.rule.MinBytes) {
			return 0
		}
		total += sum
	}
	return total
}

// rises reports whether value rose by at least step in every interval of
// the readings kept.
func (w *watcher) rises(value func(kernelReading) (uint64, bool), step uint64) bool {
	for i := 1; i < len(w.hist); i++ {
		a, ok1 := value(w.hist[i-1])
		b, ok2 := value(w.hist[i])
		if !ok1 || !ok2 || b < a+step {
			return false
		}
	}
	return true
}

// Streak is how many of the last intervals in a row a cache's active bytes
// rose in by at least the rule's MinBytes, beyond what reclaimable growth
// explains (explainedGrowth).
func (w *watcher) Streak(cache string) int {
	n := 0
	for i := len(w.hist) - 1; i > 0; i-- {
		a, ok1 := w.hist[i-1].Caches[cache]
		b, ok2 := w.hist[i].Caches[cache]
		if !ok1 || !ok2 || b.ActiveBytes() < a.ActiveBytes()+explainedGrowth(w.hist[i-1], w.hist[i], cache, w.hist[i].lsm)+w.rule.MinBytes {
			break
		}
		n++
	}
	return n
}

// explainedGrowth is how much of an unreclaimable cache's growth between
// two readings other caches' growth explains, at most: objects the kernel
// allocates for, and frees with, other objects, which grow with reclaimable
// caches and are no leak of their own. lsm is the name lsm_inode_cache's
// objects show under (merged, it is another cache's).
//   - lsm_inode_cache holds a security blob per inode: up to one object per
//     inode added to an inode cache.
//   - every new slab gets a vector of per-object metadata (obj_cgroup
//     pointers, 8 bytes an object; with memory allocation profiling, 16),
//     allocated by kmalloc (alloc_slab_obj_exts, memcg_alloc_slab_cgroups):
//     up to a vector per slab added, in the kmalloc caches of both sizes.
func explainedGrowth(prev, cur kernelReading, cache, lsm string) uint64 {
	var e uint64
	if cache == lsm {
		var inodes uint64
		for name, c := range cur.Caches {
			if p, ok := prev.Caches[name]; ok && isInodeCache(name) && c.ActiveObjs > p.ActiveObjs {
				inodes += c.ActiveObjs - p.ActiveObjs
			}
		}
		e += inodes * cur.Caches[cache].ObjSize
	}
	size, ok := kmallocSize(cache)
	if !ok {
		return e
	}
	for name, c := range cur.Caches {
		p, ok := prev.Caches[name]
		if !ok || c.NumSlabs <= p.NumSlabs || c.ObjPerSlab == 0 {
			continue
		}
		for _, per := range []uint64{8, 16} {
			if kmallocClass(c.ObjPerSlab*per) == size {
				e += (c.NumSlabs - p.NumSlabs) * size
			}
		}
	}
	return e
}

// isInodeCache tells the caches of inodes (one per file system).
func isInodeCache(name string) bool {
	return name == "inode_cache" || strings.HasSuffix(name, "_inode_cache") || strings.HasSuffix(name, "_inode")
}

// kmallocSize is the object size of a kmalloc cache (kmalloc-192,
// kmalloc-cg-64, kmalloc-rnd-03-1k...); false for other caches.
func kmallocSize(name string) (uint64, bool) {
	rest, ok := strings.CutPrefix(name, "kmalloc-")
	if !ok {
		return 0, false
	}
	if i := strings.LastIndexByte(rest, '-'); i >= 0 {
		rest = rest[i+1:]
	}
	mult := uint64(1)
	if r, ok := strings.CutSuffix(rest, "k"); ok {
		rest, mult = r, 1024
	}
	var n uint64
	if _, err := fmt.Sscan(rest, &n); err != nil || n == 0 {
		return 0, false
	}
	return n * mult, true
}

// kmallocClass is the kmalloc cache size an allocation of n bytes comes
// from (0: above 8 KiB, the page allocator's).
func kmallocClass(n uint64) uint64 {
	for _, c := range []uint64{8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192} {
		if n <= c {
			return c
		}
	}
	return 0
}

// slabReclaimable tells the reclaimable slab caches (SLAB_RECLAIM_ACCOUNT:
// dentries, inodes...) from SLUB's sysfs, read once per name; without it, by
// name.
type slabReclaimable struct {
	sysfs fs.FS // /sys/kernel/slab; nil: names only
	known map[string]bool
}

func newSlabReclaimable() *slabReclaimable {
	s := &slabReclaimable{known: map[string]bool{}}
	if _, err := os.Stat("/sys/kernel/slab"); err == nil {
		s.sysfs = os.DirFS("/sys/kernel/slab")
	}
	return s
}

func (s *slabReclaimable) Is(cache string) bool {
	if v, ok := s.known[cache]; ok {
		return v
	}
	v := tracer.IsReclaimableCache(cache, nil) || reclaimableByName(cache)
	if s.sysfs != nil {
		if b, err := fs.ReadFile(s.sysfs, path.Join(cache, "reclaim_account")); err == nil {
			v = strings.TrimSpace(string(b)) == "1"
		}
	}
	s.known[cache] = v
	return v
}

// reclaimableByName is the fallback for kernels without SLUB's sysfs: the
// common SLAB_RECLAIM_ACCOUNT caches.
func reclaimableByName(cache string) bool {
	switch cache {
	case "dentry", "radix_tree_node", "buffer_head", "mbcache", "inode_cache", "ext4_extent_status", "fuse_inode", "nfs_inode_cache":
		return true
	}
	return strings.HasSuffix(cache, "_inode_cache") || strings.HasSuffix(cache, "_inode")
}

// slabProfile is the watch mode's cheap profile of the kernel's counts: a
// sample per slab cache (its active objects and bytes) under a frame that
// says whether the cache is reclaimable, labelled with the cache's name.
func slabProfile(v host.SystemView, reclaimable func(string) bool, period time.Duration) *profile.Profile {
	p := &profile.Profile{
		SampleType:    []*profile.ValueType{{Type: "inuse_objects", Unit: "count"}, {Type: "inuse_space", Unit: "bytes"}},
		PeriodType:    &profile.ValueType{Type: "space", Unit: "bytes"},
		Period:        1,
		TimeNanos:     v.Taken.UnixNano(),
		DurationNanos: period.Nanoseconds(),
		Comments:      []string{"kmemprof watch: /proc/slabinfo's active objects per cache; no allocation was traced"},
	}
	loc := frames(p)
	for _, c := range v.Caches {
		if c.ActiveObjs == 0 {
			continue
		}
		class := "unreclaimable slab"
		if reclaimable(c.Name) {
			class = "reclaimable slab"
		}
		p.Sample = append(p.Sample, &profile.Sample{
			Location: []*profile.Location{loc("[slab cache " + c.Name + "]"), loc("[" + class + "]")},
			Value:    []int64{int64(c.ActiveObjs), int64(c.ActiveBytes())},
			Label:    map[string][]string{"cache": {c.Name}, tracer.LabelReclaim: {fmt.Sprint(reclaimable(c.Name))}},
		})
	}
	return p
}

// memcgProfile is the watch mode's cheap profile of the memory cgroups'
// kernel memory: a sample per cgroup of what it holds itself (its figure
// less its children's), under its ancestors' frames, so that a flame graph
// shows the hierarchy with each cgroup's whole figure. The figure is the
// kernel memory charged, or where the kernel does not say it, the
// unreclaimable slab. Nil when there is nothing to show.
func memcgProfile(ms []host.MemcgKernel, at time.Time, period time.Duration) *profile.Profile {
	// The kernel memory charged where the kernel counts some; else the
	// unreclaimable slab (cgroup v2 before 5.18 has no "kernel", and its
	// root may count slab alone).
	kernel := false
	for _, m := range ms {
		kernel = kernel || m.Kernel > 0
	}
	figure := func(m host.MemcgKernel) int64 {
		if kernel {
			return max(m.Kernel, 0)
		}
		return max(m.SlabUnreclaimable, 0)
	}
	what := "kernel memory charged (memory.stat kernel, or memory.kmem.usage_in_bytes)"
	if !kernel {
		what = "unreclaimable slab charged (memory.stat slab_unreclaimable)"
	}
	own := map[string]int64{}
	for _, m := range ms {
		own[m.Path] += figure(m)
		if m.Path != "/" {
			own[path.Dir(m.Path)] -= figure(m)
		}
	}
	p := &profile.Profile{
		SampleType:    []*profile.ValueType{{Type: "inuse_space", Unit: "bytes"}},
		PeriodType:    &profile.ValueType{Type: "space", Unit: "bytes"},
		Period:        1,
		TimeNanos:     at.UnixNano(),
		DurationNanos: period.Nanoseconds(),
		Comments:      []string{"kmemprof watch: " + what + " per memory cgroup, each less its children's; no allocation was traced"},
	}
	frame := frames(p)
	loc := func(cg string) *profile.Location { return frame("[memcg " + cg + "]") }
	for _, m := range ms {
		v := own[m.Path]
		if v <= 0 {
			continue
		}
		var stack []*profile.Location
		for cg := m.Path; ; cg = path.Dir(cg) {
			stack = append(stack, loc(cg))
			if cg == "/" {
				break
			}
		}
		p.Sample = append(p.Sample, &profile.Sample{Location: stack, Value: []int64{v}, Label: map[string][]string{"memcg": {m.Path}}})
	}
	if len(p.Sample) == 0 {
		return nil
	}
	return p
}

// frames returns a function that gives p's location of a frame of that
// name, made once.
func frames(p *profile.Profile) func(name string) *profile.Location {
	locs := map[string]*profile.Location{}
	return func(name string) *profile.Location {
		if l, ok := locs[name]; ok {
			return l
		}
		f := &profile.Function{ID: uint64(len(p.Function) + 1), Name: name, SystemName: name}
		p.Function = append(p.Function, f)
		l := &profile.Location{ID: uint64(len(p.Location) + 1), Line: []profile.Line{{Function: f}}}
		p.Location = append(p.Location, l)
		locs[name] = l
		return l
	}
}
