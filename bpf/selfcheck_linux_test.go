package bpf

import (
	"testing"

	"github.com/kmemprof/kmemprof/bpf/bpftest"
	"github.com/kmemprof/kmemprof/symbolize/host"
	"github.com/kmemprof/kmemprof/tracer"
)

// TestCountTracked: the table counted per cache while the programs run,
// between the caller's two readings, holds a leaker's files with their
// bytes.
func TestCountTracked(t *testing.T) {
	bpftest.Require(t)
	tr, err := Open(Config{})
	if err != nil {
		t.Fatalf("Open: %+v", err)
	}
	defer tr.Close()
	const n = 3000
	bpftest.StartHiddenLeaker(t, n)
	calls := 0
	c, err := tr.CountTracked(func() { calls++ })
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Errorf("the kernel's counts were read %d times, want before and after", calls)
	}
	size := slabObjSize(t, "filp")
	t.Logf("filp %d objects, %d bytes (%d per object in slabinfo); page bytes %d; unnamed %d", c.Objects["filp"], c.Bytes["filp"], size, c.PageBytes, c.Unnamed)
	if c.Objects["filp"] < n || c.Bytes["filp"] != c.Objects["filp"]*size {
		t.Errorf("filp: %d objects, %d bytes; want the leaker's %d files of %d bytes", c.Objects["filp"], c.Bytes["filp"], n, size)
	}
	if every, why := tr.EveryAllocation(); !every {
		t.Errorf("an unfiltered capture does not trace every allocation: %s", why)
	}
}

// TestDetachForTest: the test-only detaches close the free hooks or the
// allocation hooks and leave the rest attached; Close detaches what is left.
func TestDetachForTest(t *testing.T) {
	bpftest.Require(t)
	tr, err := Open(Config{Kinds: []tracer.Kind{tracer.KindSlab, tracer.KindPage}})
	if err != nil {
		t.Fatalf("Open: %+v", err)
	}
	defer tr.Close()
	all := len(tr.links)
	frees, err := tr.DetachFreesForTest()
	if err != nil || frees == 0 {
		t.Fatalf("DetachFreesForTest: %d links, %v", frees, err)
	}
	allocs, err := tr.DetachAllocsForTest()
	if err != nil || allocs == 0 {
		t.Fatalf("DetachAllocsForTest: %d links, %v", allocs, err)
	}
	if left := len(tr.links); left != all-frees-allocs || len(tr.progs) != left || len(tr.progRoles) != left {
		t.Errorf("%d links, %d programs, %d roles left of %d after closing %d and %d", left, len(tr.progs), len(tr.progRoles), all, frees, allocs)
	}
	t.Logf("%d links: %d free hooks, %d allocation hooks, %d others", all, frees, allocs, all-frees-allocs)
	if err := tr.Detach(); err != nil {
		t.Errorf("Detach after the test detaches: %v", err)
	}
}

// slabObjSize returns a cache's object size from /proc/slabinfo.
func slabObjSize(t *testing.T, name string) uint64 {
	t.Helper()
	v, err := host.ReadKernelCounts()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range v.Caches {
		if c.Name == name {
			return c.ObjSize
		}
	}
	t.Fatalf("no %s in /proc/slabinfo", name)
	return 0
}

// TestEveryAllocation: the growth comparison needs every slab allocation
// recorded; a filter or sampling says which prevents it.
func TestEveryAllocation(t *testing.T) {
	slab := []tracer.Kind{tracer.KindSlab}
	for _, tt := range []struct {
		cfg  Config
		want string
	}{
		{Config{Kinds: slab, Tracking: TrackAdaptive}, ""},
		{Config{Kinds: slab, Tracking: TrackFull}, ""},
		{Config{Kinds: slab, Tracking: TrackSample, SampleEvery: 64}, "--mode sample records one allocation in 64"},
		{Config{Kinds: slab, PID: 42}, "--pid keeps only some allocations"},
		{Config{Kinds: slab, Follow: true, Caches: []string{"filp"}, MinSize: 8}, "--follow and --cache and --min-size keep only some allocations"},
		{Config{Kinds: slab, CgroupPath: "/sys/fs/cgroup/x", MemcgID: 7}, "--cgroup and --memcg keep only some allocations"},
		{Config{Kinds: []tracer.Kind{tracer.KindPage}}, "slab allocations are not traced"},
	} {
		ok, why := (&Tracer{cfg: tt.cfg}).EveryAllocation()
		if ok != (tt.want == "") || why != tt.want {
			t.Errorf("%+v: %v %q, want %q", tt.cfg, ok, why, tt.want)
		}
	}
}
