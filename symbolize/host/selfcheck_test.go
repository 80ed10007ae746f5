package host

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/kmemprof/kmemprof/tracer"
)

func TestCheckGroup(t *testing.T) {
	kernel := map[string]bool{"kmalloc-64": true, "kmalloc-cg-64": true, "kmalloc-1k": true, "kmalloc-cg-1k": true,
		"kmalloc-rcl-64": true, "kmalloc-8k": true, "filp": true}
	for name, want := range map[string]string{
		"filp":              "filp",
		"kmalloc-64":        "kmalloc-64",
		"kmalloc-cg-64":     "kmalloc-cg-64",
		"kmalloc-rcl-64":    "kmalloc-rcl-64",
		"kmalloc-rnd-05-64": "kmalloc-64", // CONFIG_RANDOM_KMALLOC_CACHES
		"kmalloc-rnd-15-1k": "kmalloc-1k",
		"memdup_user-64":    "kmalloc-64", // CONFIG_SLAB_BUCKETS, GFP_USER
		"msg_msg-1k":        "kmalloc-cg-1k",
		"msg_msg-8k":        "kmalloc-8k", // no kmalloc-cg-8k: cgroup.memory=nokmem
		"kmalloc-cg-8k":     "kmalloc-8k", // the same, from kmemprof's side
		"dma-kmalloc-64":    "kmalloc-64", // no ZONE_DMA here
		"bio-312":           "bio-312",    // a number, not a kmalloc size class
		"erofs_pcluster-16": "erofs_pcluster-16",
		"kmalloc-large":     "kmalloc-large",
	} {
		if got := checkGroup(name, kernel); got != want {
			t.Errorf("checkGroup(%q) = %q, want %q", name, got, want)
		}
	}
}

func slabLine(name string, active, objPerSlab uint64) SlabCache {
	return SlabCache{Name: name, ActiveObjs: active, NumObjs: active, ObjSize: 64, ObjPerSlab: objPerSlab, PagesPerSlab: 1}
}

// TestSelfCheckCaches: the kmalloc caches that serve one size class are
// summed under kmemprof's name, the readings and the start go to their
// caches, what the kernel does not list is set apart, and what neither side
// holds is left out.
func TestSelfCheckCaches(t *testing.T) {
	start := SystemView{Caches: []SlabCache{slabLine("filp", 1000, 21), slabLine("kmalloc-64", 500, 64), slabLine("kmalloc-rnd-01-64", 10, 64), slabLine("empty", 0, 10)}}
	before := SystemView{Caches: []SlabCache{slabLine("filp", 6000, 21), slabLine("kmalloc-64", 600, 64), slabLine("kmalloc-rnd-01-64", 5000, 64), slabLine("empty", 0, 10)}}
	after := SystemView{Caches: append(slices.Clone(before.Caches), slabLine("new_cache", 7, 10))}
	after.Caches[0].ActiveObjs = 6010
	tracked := map[string]uint64{"filp": 5000, "kmalloc-64": 5100, "kmalloc-72": 3}
	alloc := SlabAllocator{CPUs: 2, Nodes: 1, Params: map[string]SlubParams{"filp": {CPUPartial: 120}}}
	caches, unmatched := SelfCheckCaches(tracked, &start, before, after, alloc)
	if !maps.Equal(unmatched, map[string]uint64{"kmalloc-72": 3}) {
		t.Errorf("unmatched %v", unmatched)
	}
	want := []tracer.SelfCheckCache{
		{Name: "filp", Tracked: 5000, Before: 6000, After: 6010, Start: 1000, HasStart: true, Cached: 2 * (2*21 + 2*120)},
		{Name: "kmalloc-64", Kernel: []string{"kmalloc-64", "kmalloc-rnd-01-64"}, Tracked: 5100, Before: 5600, After: 5600, Start: 510, HasStart: true,
			Cached: 2 * 2 * (2*64 + 2*120)},
		{Name: "new_cache", After: 7, HasStart: true, Cached: 2 * (2*10 + 2*120)},
	}
	if len(caches) != len(want) {
		t.Fatalf("caches %+v, want %+v", caches, want)
	}
	for i := range want {
		if g, w := caches[i], want[i]; g.Name != w.Name || !slices.Equal(g.Kernel, w.Kernel) || g.Tracked != w.Tracked || g.Before != w.Before ||
			g.After != w.After || g.Start != w.Start || g.HasStart != w.HasStart || g.Cached != w.Cached {
			t.Errorf("cache %d = %+v, want %+v", i, g, w)
		}
	}
	// Without a start, growth cannot be compared.
	caches, _ = SelfCheckCaches(tracked, nil, before, after, alloc)
	for _, c := range caches {
		if c.HasStart {
			t.Errorf("%s has a start without a start view", c.Name)
		}
	}
}

func TestSlabAllocatorCached(t *testing.T) {
	c := SlabCache{Name: "maple_node", ObjSize: 256, ObjPerSlab: 16}
	a := SlabAllocator{CPUs: 4, Nodes: 2, Params: map[string]SlubParams{"maple_node": {CPUPartial: 52, SheafCapacity: 32}}}
	// Per CPU: two slabs, twice cpu_partial, three sheaves; per node: the barn's ten full sheaves.
	if got, want := a.Cached(c), uint64(4*(2*16+2*52+3*32)+2*10*32); got != want {
		t.Errorf("Cached = %d, want %d", got, want)
	}
	// Not in sysfs: the kernel's default cpu_partial for the object size.
	for size, cp := range map[uint64]uint64{64: 120, 256: 52, 1024: 24, 4096: 6} {
		c := SlabCache{Name: "x", ObjSize: size, ObjPerSlab: 8}
		if got, want := (SlabAllocator{}).Cached(c), 2*8+2*cp; got != want {
			t.Errorf("size %d: Cached = %d, want %d", size, got, want)
		}
	}
}

// TestSlabAllocatorCachedBefore516: before 5.16 a CPU's partial slabs are
// bounded by the free objects they had when put there, so up to
// cpu_partial nearly full slabs pile up (seen on 5.10: lsm_file_cache
// counted 2,948 freed objects as active on two CPUs, twice cpu_partial 30
// would allow 60 per CPU).
func TestSlabAllocatorCachedBefore516(t *testing.T) {
	c := SlabCache{Name: "lsm_file_cache", ObjSize: 24, ObjPerSlab: 170}
	a := SlabAllocator{CPUs: 2, Nodes: 1, Params: map[string]SlubParams{"lsm_file_cache": {CPUPartial: 30}}, PartialByFreeObjects: true}
	if got, want := a.Cached(c), uint64(2*(2*170+30*170)); got != want {
		t.Errorf("Cached = %d, want %d", got, want)
	}
	for release, want := range map[string]bool{"5.10.0-32-cloud-amd64": true, "5.15.180": true, "5.16.0": false, "6.1.0-50-cloud-amd64": false, "7.2.13+deb14-cloud-amd64": false, "": false} {
		if got := partialByFreeObjects(release); got != want {
			t.Errorf("partialByFreeObjects(%q) = %v, want %v", release, got, want)
		}
	}
}

func TestReadSlabAllocator(t *testing.T) {
	system := fstest.MapFS{
		"cpu/possible":  {Data: []byte("0-3,8-9\n")},
		"node/possible": {Data: []byte("0\n")},
	}
	slab := fstest.MapFS{
		"filp/cpu_partial":          {Data: []byte("120\n")},
		"maple_node/cpu_partial":    {Data: []byte("52\n")},
		"maple_node/sheaf_capacity": {Data: []byte("32\n")},
		"broken/cpu_partial":        {Data: []byte("many\n")},
	}
	a := readSlabAllocator(system, slab, []string{"filp", "maple_node", "broken", "missing"})
	if a.CPUs != 6 || a.Nodes != 1 {
		t.Errorf("CPUs %d, nodes %d; want 6 and 1", a.CPUs, a.Nodes)
	}
	want := map[string]SlubParams{"filp": {CPUPartial: 120}, "maple_node": {CPUPartial: 52, SheafCapacity: 32}}
	if !maps.Equal(a.Params, want) {
		t.Errorf("params %v, want %v", a.Params, want)
	}
	a = readSlabAllocator(fstest.MapFS{}, fstest.MapFS{}, []string{"filp"})
	if a.CPUs != 1 || a.Nodes != 1 || len(a.Params) != 0 {
		t.Errorf("without sysfs: %+v, want one CPU and node, no params", a)
	}
}

func TestParseCPUList(t *testing.T) {
	for s, want := range map[string]int{"0": 1, "0-1\n": 2, "0-3,8,10-11": 7} {
		if n, err := parseCPUList(s); err != nil || n != want {
			t.Errorf("parseCPUList(%q) = %d, %v; want %d", s, n, err, want)
		}
	}
	for _, s := range []string{"", "a", "3-1", "0-x"} {
		if _, err := parseCPUList(s); err == nil {
			t.Errorf("parseCPUList(%q): no error", s)
		}
	}
}

func TestSelfCheckInputHost(t *testing.T) {
	mem := func(total, free uint64) Meminfo { return Meminfo{MemTotal: total, MemFree: free} }
	before := SystemView{Meminfo: mem(8<<30, 6<<30), Caches: []SlabCache{slabLine("filp", 10, 21)}}
	after := SystemView{Meminfo: mem(8<<30, 5<<30), Caches: []SlabCache{slabLine("filp", 10, 21)}}
	in := SelfCheckInput(before.Taken, map[string]uint64{"filp": 5}, 1<<20, &before, before, after, SlabAllocator{}, true, "")
	if !in.Growth || in.Source != "/proc/slabinfo" || len(in.Caches) != 1 {
		t.Errorf("input %+v", in)
	}
	if p := in.Pages; p == nil || p.Tracked != 1<<20 || p.InUse != 3<<30 || p.Slack == 0 {
		t.Errorf("pages %+v: want 1 MiB tracked against the larger use, 3 GiB", p)
	}
	in = SelfCheckInput(before.Taken, nil, 0, nil, before, after, SlabAllocator{}, true, "")
	if in.Growth || !strings.Contains(in.NoGrowth, "not read at the start") {
		t.Errorf("without a start: growth %v (%q)", in.Growth, in.NoGrowth)
	}
	in = SelfCheckInput(before.Taken, nil, 0, &before, before, after, SlabAllocator{}, false, "a filter keeps only some allocations")
	if in.Growth || in.NoGrowth != "a filter keeps only some allocations" {
		t.Errorf("filtered: growth %v (%q)", in.Growth, in.NoGrowth)
	}
	if in := SelfCheckInput(before.Taken, nil, 0, nil, SystemView{}, after, SlabAllocator{}, true, ""); in.Pages != nil {
		t.Errorf("pages compared without meminfo: %+v", in.Pages)
	}
}
