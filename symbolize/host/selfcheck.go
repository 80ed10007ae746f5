package host

import (
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kmemprof/kmemprof/tracer"
)

// This file turns /proc/slabinfo into the kernel's side of the self-check
// (tracer.RunSelfCheck): which of its lines hold the objects of each cache
// kmemprof names, and how many free objects SLUB may count as active in
// each. The sysfs reader is in selfcheck_linux.go.

// SlubParams are what bounds, for one slab cache, the free objects SLUB
// keeps for each CPU: /proc/slabinfo counts them as active (it subtracts
// only the free objects of the node's partial slabs).
type SlubParams struct {
	// CPUPartial is the cache's cpu_partial (sysfs): each CPU keeps up to
	// about twice that many objects' worth of partial slabs.
	CPUPartial uint64
	// SheafCapacity is the objects per sheaf (sysfs sheaf_capacity, Linux
	// 6.18+; 0: the cache has no sheaves).
	SheafCapacity uint64
}

// SlabAllocator is what the self-check's slack is computed from: the CPUs
// and memory nodes, and each cache's SlubParams.
type SlabAllocator struct {
	CPUs, Nodes int
	// Params are the caches' parameters by name; a cache missing from it
	// (sysfs not readable) gets the kernel's default cpu_partial for its
	// object size and no sheaves.
	Params map[string]SlubParams
	// PartialByFreeObjects: the kernel (before 5.16) bounds a CPU's
	// partial slabs by the free objects they had when put there, often
	// one each: up to cpu_partial slabs pile up, and as more of their
	// objects are freed, each may come to hold a slab's worth of free
	// objects. From 5.16 it bounds the slabs themselves.
	PartialByFreeObjects bool
}

// barnFullSheaves is how many full sheaves SLUB keeps per memory node in
// its barn (MAX_FULL_SHEAVES), beside each CPU's.
const barnFullSheaves = 10

// Cached returns how many free objects of c /proc/slabinfo may count as
// active: for each CPU, its CPU slab (up to ObjPerSlab free objects, and
// one more slab's worth for a slab being swapped in) and its partial slabs
// (cpu_partial objects are kept as up to 2 * cpu_partial / ObjPerSlab
// slabs, which may be nearly empty: 2 * cpu_partial objects), plus, with
// sheaves, the main, spare and RCU sheaves of each CPU and the barn's full
// sheaves of each node.
func (a SlabAllocator) Cached(c SlabCache) uint64 {
	p, ok := a.Params[c.Name]
	if !ok {
		p = SlubParams{CPUPartial: defaultCPUPartial(c.ObjSize)}
	}
	cpus, nodes := uint64(max(a.CPUs, 1)), uint64(max(a.Nodes, 1))
	partial := 2 * p.CPUPartial
	if a.PartialByFreeObjects {
		partial = p.CPUPartial * max(c.ObjPerSlab, 1)
	}
	perCPU := 2*c.ObjPerSlab + partial + 3*p.SheafCapacity
	return cpus*perCPU + nodes*barnFullSheaves*p.SheafCapacity
}

// defaultCPUPartial is the cpu_partial SLUB gives a cache of objects of
// size bytes (set_cpu_partial, 5.16+; before, 2, 6, 13 and 30: smaller,
// and Cached's bound for those kernels is the larger for it).
func defaultCPUPartial(size uint64) uint64 {
	switch {
	case size >= DefaultPageSize:
		return 6
	case size >= 1024:
		return 24
	case size >= 256:
		return 52
	}
	return 120
}

// partialByFreeObjects reports whether a kernel release (uname -r) is
// older than 5.16, whose SLUB bounds a CPU's partial slabs by free objects
// (SlabAllocator.PartialByFreeObjects). An unreadable release is taken as
// newer.
func partialByFreeObjects(release string) bool {
	var major, minor int
	if _, err := fmt.Sscanf(release, "%d.%d", &major, &minor); err != nil {
		return false
	}
	return major < 5 || major == 5 && minor < 16
}

// kmallocLine matches the names of kmalloc's caches and of the caches that
// serve kmallocs of the same size classes: kmalloc-64, kmalloc-cg-64,
// kmalloc-rcl-64, dma-kmalloc-64, kmalloc-rnd-03-64
// (CONFIG_RANDOM_KMALLOC_CACHES: kmalloc-64 is one of 16 caches chosen by
// call site) and the dedicated buckets of CONFIG_SLAB_BUCKETS
// (memdup_user-64, msg_msg-64), whose kmallocs the kmalloc tracepoint
// reports like any other.
var kmallocLine = regexp.MustCompile(`^(kmalloc|kmalloc-cg|kmalloc-rcl|dma-kmalloc|kmalloc-rnd-\d+|memdup_user|msg_msg)-(\d+k?)$`)

// kmallocBuckets gives the kmalloc variant whose allocations each in-tree
// user of dedicated buckets makes: memdup_user copies with GFP_USER,
// msg_msg with GFP_KERNEL_ACCOUNT; kmemprof names a kmalloc by its size
// and GFP flags, so it names theirs kmalloc-N and kmalloc-cg-N.
var kmallocBuckets = map[string]string{"memdup_user": "kmalloc", "msg_msg": "kmalloc-cg"}

// checkGroup returns the name under which the self-check compares the
// cache called name (a slabinfo line, or a cache kmemprof tracked): the
// kmalloc cache of its variant and size class, or its own name. A kmalloc
// variant the kernel does not have (kmalloc-cg-N with cgroup.memory=nokmem,
// which serves them from kmalloc-N) is compared with kmalloc-N.
func checkGroup(name string, kernel map[string]bool) string {
	m := kmallocLine.FindStringSubmatch(name)
	if m == nil {
		return name
	}
	variant, size := m[1], m[2]
	switch {
	case strings.HasPrefix(variant, "kmalloc-rnd-"):
		variant = "kmalloc"
	case kmallocBuckets[variant] != "":
		variant = kmallocBuckets[variant]
	}
	g := variant + "-" + size
	if !kernel[g] {
		g = "kmalloc-" + size
	}
	return g
}

// SelfCheckCaches matches what kmemprof tracked (objects per cache, as the
// profile names the caches) with /proc/slabinfo read just before and just
// after the tracked figures were read, and at the start of the capture
// (nil: not known): one tracer.SelfCheckCache per cache, the lines that
// serve one kmalloc size class summed (kmalloc-64 with kmalloc-rnd-NN-64
// and memdup_user-64). Tracked caches that no line holds are returned
// apart (unmatched). Caches that neither side holds anything of are left
// out.
func SelfCheckCaches(tracked map[string]uint64, start *SystemView, before, after SystemView, alloc SlabAllocator) (caches []tracer.SelfCheckCache, unmatched map[string]uint64) {
	names := map[string]bool{}
	for _, c := range after.Caches {
		names[c.Name] = true
	}
	groups := map[string]*tracer.SelfCheckCache{}
	var order []string
	group := func(name string) *tracer.SelfCheckCache {
		g := groups[name]
		if g == nil {
			g = &tracer.SelfCheckCache{Name: name, HasStart: start != nil && len(start.Caches) > 0}
			groups[name] = g
			order = append(order, name)
		}
		return g
	}
	members := map[string]string{} // slabinfo line -> group
	for _, c := range after.Caches {
		g := group(checkGroup(c.Name, names))
		members[c.Name] = g.Name
		g.Kernel = append(g.Kernel, c.Name)
		g.After += c.ActiveObjs
		g.Cached += alloc.Cached(c)
	}
	for _, c := range before.Caches {
		if g, ok := members[c.Name]; ok {
			groups[g].Before += c.ActiveObjs
		}
	}
	if start != nil {
		for _, c := range start.Caches {
			if g, ok := members[c.Name]; ok {
				groups[g].Start += c.ActiveObjs
			}
		}
	}
	for name, n := range tracked {
		g := groups[checkGroup(name, names)]
		if g == nil {
			if unmatched == nil {
				unmatched = map[string]uint64{}
			}
			unmatched[name] += n
			continue
		}
		g.Tracked += n
	}
	slices.Sort(order)
	for _, name := range order {
		g := groups[name]
		if g.Tracked == 0 && g.Before == 0 && g.After == 0 && g.Start == 0 {
			continue
		}
		if len(g.Kernel) == 1 && g.Kernel[0] == g.Name {
			g.Kernel = nil
		} else {
			slices.Sort(g.Kernel)
		}
		caches = append(caches, *g)
	}
	return caches, unmatched
}

// pagesSlack is how far tracked page memory may exceed the memory in use
// without a contradiction: pages allocated between the readings.
const pagesSlack = 16 << 20

// SelfCheckPages compares the page memory kmemprof tracked (page
// allocations and large kmallocs, in bytes) with the memory in use, the
// larger of MemTotal - MemFree before and after: nil when meminfo was not
// read.
func SelfCheckPages(tracked uint64, before, after SystemView) *tracer.SelfCheckPages {
	if before.MemTotal == 0 || after.MemTotal == 0 {
		return nil
	}
	used := func(m Meminfo) uint64 {
		if m.MemFree > m.MemTotal {
			return 0
		}
		return m.MemTotal - m.MemFree
	}
	return &tracer.SelfCheckPages{Tracked: tracked, InUse: max(used(before.Meminfo), used(after.Meminfo)), Slack: pagesSlack}
}

// SelfCheckInput is the self-check's input: the tracked figures (objects
// per cache, page bytes) read at taken between the kernel's views before
// and after, the kernel's view at the start of the capture (nil: not
// read), and whether every allocation was traced (why not, when not).
func SelfCheckInput(taken time.Time, objects map[string]uint64, pageBytes uint64, start *SystemView, before, after SystemView, alloc SlabAllocator, every bool, why string) tracer.SelfCheckInput {
	caches, unmatched := SelfCheckCaches(objects, start, before, after, alloc)
	in := tracer.SelfCheckInput{
		Taken:     taken,
		Source:    "/proc/slabinfo",
		Caches:    caches,
		Unmatched: unmatched,
		Pages:     SelfCheckPages(pageBytes, before, after),
		Growth:    every && start != nil && len(start.Caches) > 0,
		NoGrowth:  why,
	}
	if every && !in.Growth {
		in.NoGrowth = "/proc/slabinfo was not read at the start"
	}
	return in
}

// parseCPUList parses a list of CPUs or nodes as sysfs writes it
// ("0-3,8,10-11") and returns how many it names.
func parseCPUList(s string) (int, error) {
	n := 0
	for _, part := range strings.Split(strings.TrimSpace(s), ",") {
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return 0, fmt.Errorf("parsing CPU list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return 0, fmt.Errorf("parsing CPU list %q: bad range %q", s, part)
			}
		}
		n += b - a + 1
	}
	if n == 0 {
		return 0, errors.New("parsing CPU list: empty")
	}
	return n, nil
}

// readSlabAllocator reads the possible CPUs and nodes from sysfsSystem
// (/sys/devices/system) and the SlubParams of the caches named from
// slabFS (/sys/kernel/slab). What cannot be read is left to its default
// (one CPU or node, the kernel's default cpu_partial).
func readSlabAllocator(sysfsSystem, slabFS fs.FS, names []string) SlabAllocator {
	a := SlabAllocator{CPUs: 1, Nodes: 1, Params: map[string]SlubParams{}}
	if b, err := fs.ReadFile(sysfsSystem, "cpu/possible"); err == nil {
		if n, err := parseCPUList(string(b)); err == nil {
			a.CPUs = n
		}
	}
	if b, err := fs.ReadFile(sysfsSystem, "node/possible"); err == nil {
		if n, err := parseCPUList(string(b)); err == nil {
			a.Nodes = n
		}
	}
	readUint := func(path string) (uint64, bool) {
		b, err := fs.ReadFile(slabFS, path)
		if err != nil {
			return 0, false
		}
		v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		return v, err == nil
	}
	for _, n := range names {
		cp, ok := readUint(n + "/cpu_partial")
		if !ok {
			continue
		}
		sh, _ := readUint(n + "/sheaf_capacity")
		a.Params[n] = SlubParams{CPUPartial: cp, SheafCapacity: sh}
	}
	return a
}
