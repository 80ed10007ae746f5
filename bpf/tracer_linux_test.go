package bpf

import (
	"bufio"
	"errors"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/kmemprof/kmemprof/bpf/bpftest"
	"github.com/kmemprof/kmemprof/symbolize/host"
	"github.com/kmemprof/kmemprof/tracer"
)

func TestMain(m *testing.M) {
	bpftest.HelperMain()
	os.Exit(m.Run())
}

// funcRange returns the address range of a kernel text symbol from /proc/kallsyms.
func funcRange(t *testing.T, name string) (lo, hi uint64) {
	t.Helper()
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var addrs []uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 3 || (fs[1] != "t" && fs[1] != "T") {
			continue
		}
		a, err := strconv.ParseUint(fs[0], 16, 64)
		if err != nil {
			continue
		}
		if fs[2] == name && len(fs) == 3 {
			lo = a
		}
		addrs = append(addrs, a)
	}
	if lo == 0 {
		t.Fatalf("%s not in /proc/kallsyms (addresses hidden?)", name)
	}
	sort.Slice(addrs, func(i, j int) bool { return addrs[i] < addrs[j] })
	i := sort.Search(len(addrs), func(i int) bool { return addrs[i] > lo })
	return lo, addrs[i]
}

func stackHas(st []uint64, lo, hi uint64) bool {
	for _, a := range st {
		if a > lo && a <= hi { // return addresses: after the call instruction
			return true
		}
	}
	return false
}

// countEventfd counts records whose stack goes through do_eventfd and that
// belong to pid, by stack.
func countEventfd(t *testing.T, snap *tracer.Snapshot, pid int) map[tracer.StackID]int {
	lo, hi := funcRange(t, "do_eventfd")
	out := map[tracer.StackID]int{}
	for _, r := range snap.Records {
		if int(r.PID) != pid {
			continue
		}
		if st, ok := snap.Stacks[r.Stack]; ok && stackHas(st, lo, hi) {
			out[r.Stack]++
		}
	}
	return out
}

func TestEventfdLeakEveryMode(t *testing.T) {
	bpftest.Require(t)
	for _, mode := range []Mode{ModeRawTP, ModeTPBTF, ModeTracepoint} {
		t.Run(string(mode), func(t *testing.T) {
			tr, err := Open(Config{Mode: mode, Tracking: TrackFull, MaxOutstanding: 1 << 18, MaxStacks: 1 << 14})
			if err != nil {
				t.Fatalf("Open: %+v", err)
			}
			defer tr.Close()
			if tr.Mode() != mode {
				t.Fatalf("mode %s, want %s", tr.Mode(), mode)
			}
			const n = 2000
			l := bpftest.StartLeaker(t, n)
			if err := tr.Detach(); err != nil {
				t.Fatal(err)
			}
			snap, err := tr.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			byStack := countEventfd(t, snap, l.PID)
			var full int
			for _, c := range byStack {
				if c == n {
					full++
				}
			}
			// file, dentry, eventfd_ctx and the LSM blob: 4 stacks of n each
			// (3 when no LSM allocates a file blob).
			if full < 3 {
				t.Errorf("stacks through do_eventfd with exactly %d records: %d, want >= 3 (counts %v)", n, full, byStack)
			}
			checkAccounting(t, snap)
			var events uint64
			for _, c := range snap.Meta.Counters {
				if strings.HasPrefix(c.Name, "events_") {
					events += c.Value
				}
				if c.Loss && c.Value != 0 {
					t.Logf("loss counter %s=%d", c.Name, c.Value)
				}
			}
			if events < 4*n {
				t.Errorf("events counted %d, want >= %d", events, 4*n)
			}
		})
	}
}

func TestReleasedAllocationsLeaveInUse(t *testing.T) {
	bpftest.Require(t)
	tr, err := Open(Config{Tracking: TrackFull, MaxOutstanding: 1 << 18, MaxStacks: 1 << 14})
	if err != nil {
		t.Fatalf("Open: %+v", err)
	}
	defer tr.Close()
	const n = 2000
	l := bpftest.StartLeaker(t, n)
	l.Release(t)
	time.Sleep(500 * time.Millisecond) // dentries are freed after an RCU grace period
	if err := tr.Detach(); err != nil {
		t.Fatal(err)
	}
	snap, err := tr.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// New slabs the leak made the allocator create keep their metadata
	// (allocated under allocate_slab) after the objects are freed.
	// allocate_slab is inlined into new_slab on some builds.
	slab := "allocate_slab"
	if !kallsymsHas(slab) {
		slab = "new_slab"
	}
	slo, shi := funcRange(t, slab)
	for st, c := range countEventfd(t, snap, l.PID) {
		if c > n/50 && !stackHas(snap.Stacks[st], slo, shi) {
			t.Errorf("stack %d still holds %d of %d released allocations", st, c, n)
		}
	}
	var freed uint64
	for _, c := range snap.Meta.Counters {
		if c.Name == "freed" {
			freed = c.Value
		}
	}
	if freed < 3*n {
		t.Errorf("freed counter %d, want >= %d", freed, 3*n)
	}
}

func TestKprobeProgramsPassVerifier(t *testing.T) {
	bpftest.Require(t)
	names, err := LoadOnly(Config{}, ModeKprobe)
	if err != nil {
		t.Fatalf("kprobe programs rejected: %+v", err)
	}
	if len(names) < 5 {
		t.Fatalf("loaded %v", names)
	}
}

func TestKprobeAttachFailsClearly(t *testing.T) {
	bpftest.Require(t)
	if _, err := os.Stat("/sys/bus/event_source/devices/kprobe"); err == nil {
		t.Skip("this kernel has kprobes; the failure path is not reachable")
	}
	tr, err := Open(Config{Mode: ModeKprobe})
	if err == nil {
		tr.Close()
		t.Fatal("kprobe attach succeeded on a kernel without kprobe support")
	}
	if !errors.Is(err, ErrAttach) || !strings.Contains(err.Error(), "CONFIG_KPROBES") {
		t.Fatalf("error does not name the missing kernel support: %v", err)
	}
}

func TestProgramsGoneAfterClose(t *testing.T) {
	bpftest.Require(t)
	tr, err := Open(Config{MaxOutstanding: 1024, MaxStacks: 1024})
	if err != nil {
		t.Fatalf("Open: %+v", err)
	}
	ids := tr.ProgramIDs()
	if len(ids) == 0 {
		t.Fatal("no program ids")
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		// Program freeing is deferred to an RCU grace period after the last fd closes.
		deadline := time.Now().Add(5 * time.Second)
		for {
			p, err := ebpf.NewProgramFromID(id)
			if err != nil {
				break
			}
			p.Close()
			if time.Now().After(deadline) {
				t.Fatalf("program %d still loaded after Close", id)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// testCgroup makes a cgroup v2 directory for one test and removes it after.
func testCgroup(t *testing.T) (abs, rel string) {
	t.Helper()
	return bpftest.Cgroup(t, host.Cgroup2Mount())
}

// TestKernelFilters checks that each filter runs in the kernel: the leak is
// still found, and nothing outside the filter is recorded.
func TestKernelFilters(t *testing.T) {
	bpftest.Require(t)
	resolver := host.NewCgroupResolver()
	const n = 1000
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, cfg *Config) (cgroupDir string)
		check func(t *testing.T, r tracer.Record, leakPID int, cgroupRel string)
	}{
		{
			name: "pid",
			check: func(t *testing.T, r tracer.Record, pid int, _ string) {
				if int(r.PID) != pid {
					t.Errorf("record of pid %d (%s) passed a pid filter for %d", r.PID, r.Comm, pid)
				}
			},
		},
		{
			name: "cache",
			setup: func(t *testing.T, cfg *Config) string {
				cfg.Caches = []string{"kmalloc-64", "filp"}
				return ""
			},
			check: func(t *testing.T, r tracer.Record, _ int, _ string) {
				if r.Cache != "filp" && !strings.HasPrefix(r.Cache, "kmalloc-") || strings.HasPrefix(r.Cache, "kmalloc-") && !strings.HasSuffix(r.Cache, "-64") {
					t.Errorf("record of cache %q passed a cache filter for kmalloc-64,filp", r.Cache)
				}
			},
		},
		{
			name: "min-size",
			setup: func(t *testing.T, cfg *Config) string {
				cfg.MinSize = 128
				return ""
			},
			check: func(t *testing.T, r tracer.Record, _ int, _ string) {
				if r.BytesAlloc < 128 {
					t.Errorf("record of %d bytes (%s) passed --min-size 128", r.BytesAlloc, r.Cache)
				}
			},
		},
		{
			name: "cgroup",
			setup: func(t *testing.T, cfg *Config) string {
				abs, _ := testCgroup(t)
				cfg.CgroupPath = abs
				return abs
			},
			check: func(t *testing.T, r tracer.Record, _ int, rel string) {
				if got := resolver.Path(r.CgroupID); got != rel {
					t.Errorf("record in cgroup %q (%s) passed a filter for %q", got, r.Comm, rel)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Tracking: TrackFull, MaxOutstanding: 1 << 16, MaxStacks: 1 << 12}
			var cgDir, cgRel string
			if tc.setup != nil {
				cgDir = tc.setup(t, &cfg)
				if cgDir != "" {
					cgRel = strings.TrimPrefix(cgDir, host.Cgroup2Mount())
				}
			}
			l := bpftest.StartIdleLeaker(t, n, cgDir)
			if tc.name == "pid" {
				cfg.PID = uint32(l.PID)
			}
			tr, err := Open(cfg)
			if err != nil {
				t.Fatalf("Open: %+v", err)
			}
			defer tr.Close()
			l.Leak(t)
			if err := tr.Detach(); err != nil {
				t.Fatal(err)
			}
			snap, err := tr.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range snap.Records {
				tc.check(t, r, l.PID, cgRel)
			}
			var found bool
			for _, c := range countEventfd(t, snap, l.PID) {
				found = found || c == n
			}
			if !found {
				t.Errorf("the leak (%d objects through do_eventfd) is not among %d records", n, len(snap.Records))
			}
		})
	}
}

// TestTrackingModes checks the adaptive and sampled modes on a real leak.
func TestTrackingModes(t *testing.T) {
	bpftest.Require(t)
	const n = 10000
	t.Run("adaptive", func(t *testing.T) {
		// Filtered to the leaker in the kernel: call-site state is shared
		// by every process, and others' churn at the same sites (file
		// opens) would cool them.
		l := bpftest.StartIdleLeaker(t, n, "")
		tr, err := Open(Config{Tracking: TrackAdaptive, HotThreshold: 64, PID: uint32(l.PID), MaxOutstanding: 1 << 18, MaxStacks: 1 << 14})
		if err != nil {
			t.Fatalf("Open: %+v", err)
		}
		defer tr.Close()
		l.Leak(t)
		if err := tr.Detach(); err != nil {
			t.Fatal(err)
		}
		snap, err := tr.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		// Each per-eventfd allocation site turns hot after 64 outstanding
		// allocations; everything after that has its full stack.
		var walked int
		for _, c := range countEventfd(t, snap, l.PID) {
			if c >= n-64-n/100 && c <= n {
				walked++
			}
		}
		if walked < 3 {
			t.Errorf("stacks through do_eventfd holding about %d records: %d, want >= 3 (%v)", n, walked, countEventfd(t, snap, l.PID))
		}
		// The first allocations of each site are kept, under a partial stack.
		var partial int
		for _, r := range snap.Records {
			if snap.Partial[r.Stack] && int(r.PID) == l.PID {
				partial++
			}
		}
		if partial < 3*60 {
			t.Errorf("records under partial (call-site) stacks: %d, want >= %d", partial, 3*60)
		}
		checkAccounting(t, snap)
		if got := counter(snap, "hot_sites"); got < 3 {
			t.Errorf("hot_sites = %d, want >= 3", got)
		}
	})
	t.Run("sample", func(t *testing.T) {
		l := bpftest.StartIdleLeaker(t, n, "")
		tr, err := Open(Config{Tracking: TrackSample, SampleEvery: 16, PID: uint32(l.PID), MaxOutstanding: 1 << 18, MaxStacks: 1 << 14})
		if err != nil {
			t.Fatalf("Open: %+v", err)
		}
		defer tr.Close()
		l.Leak(t)
		if err := tr.Detach(); err != nil {
			t.Fatal(err)
		}
		snap, err := tr.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if snap.SampleEvery != 16 {
			t.Fatalf("SampleEvery = %d", snap.SampleEvery)
		}
		// About n/16 = 625 records per stack; a binomial count stays within
		// 625 +- 5 sigma (sigma ~ 24) in any sane run.
		var near int
		for st, c := range countEventfd(t, snap, l.PID) {
			if c > 100 && (c < 625-125 || c > 625+125) {
				t.Errorf("stack %d: %d sampled records, want about 625", st, c)
			}
			if c >= 625-125 && c <= 625+125 {
				near++
			}
		}
		if near < 3 {
			t.Errorf("stacks through do_eventfd with about 625 sampled records: %d, want >= 3 (%v)", near, countEventfd(t, snap, l.PID))
		}
		checkAccounting(t, snap)
		if got := counter(snap, "sampled_out"); got < uint64(n) {
			t.Errorf("sampled_out = %d, want > %d", got, n)
		}
	})
}

func counter(snap *tracer.Snapshot, name string) uint64 {
	for _, c := range snap.Meta.Counters {
		if c.Name == name {
			return c.Value
		}
	}
	return 0
}

// TestAdaptiveCooling: a call site that rose and stopped growing is cooled,
// so later allocations there are not walked until it grows again by the
// threshold.
func TestAdaptiveCooling(t *testing.T) {
	bpftest.Require(t)
	tr, err := Open(Config{Tracking: TrackAdaptive, HotThreshold: 64, MaxOutstanding: 1 << 18, MaxStacks: 1 << 14})
	if err != nil {
		t.Fatalf("Open: %+v", err)
	}
	defer tr.Close()
	first := bpftest.StartLeaker(t, 1000)
	// At least two cooling rounds: one to see the count, one to see it did
	// not grow. On a loaded machine rounds come later: wait for the sites
	// of the leak (three or more) to be cooled.
	for deadline := time.Now().Add(20 * time.Second); tr.sites.cooled.Load() < 3 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	second := bpftest.StartLeaker(t, 30)
	if err := tr.Detach(); err != nil {
		t.Fatal(err)
	}
	snap, err := tr.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var walked, partial int
	for _, r := range snap.Records {
		if int(r.PID) != second.PID {
			continue
		}
		if snap.Partial[r.Stack] {
			partial++
		} else if r.Stack >= 0 {
			walked++
		}
	}
	if partial < 3*30 {
		t.Errorf("allocations after cooling: %d under call-site stacks, %d walked; want >= 90 not walked", partial, walked)
	}
	var firstWalked int
	for _, c := range countEventfd(t, snap, first.PID) {
		if c >= 1000-64-10 {
			firstWalked++
		}
	}
	if firstWalked < 3 {
		t.Errorf("the first leak's stacks were not walked while it grew: %v", countEventfd(t, snap, first.PID))
	}
	if got := counter(snap, "sites_cooled"); got < 3 {
		t.Errorf("sites_cooled = %d, want >= 3", got)
	}
}

// checkAccounting checks that every event the hooks saw is accounted for by
// exactly one outcome counter: nothing is lost without a count.
func checkAccounting(t *testing.T, snap *tracer.Snapshot) {
	t.Helper()
	c := func(name string) uint64 { return counter(snap, name) }
	allocs := c("events_kmem_cache_alloc") + c("events_kmalloc") + c("events_mm_page_alloc") + c("events_percpu_alloc_percpu")
	frees := c("events_kmem_cache_free") + c("events_kfree") + c("events_mm_page_free") + c("events_mm_page_free_batched") +
		c("events_percpu_free_percpu") + c("events_kmem_cache_free_bulk") + c("events_kvfree_call_rcu")
	outcomes := c("tracked") + c("outstanding_map_full") + c("filtered") + c("self") + c("failed_allocs") + c("sampled_out") + c("nested_allocs") +
		c("counted_allocs")
	if allocs == 0 || allocs != outcomes {
		t.Errorf("allocation events %d, but tracked+map_full+filtered+self+failed+sampled_out+nested+counted = %d", allocs, outcomes)
	}
	freed := c("freed") + c("free_untracked_slab") + c("free_untracked_page") + c("free_untracked_percpu") + c("free_null") + c("bulk_free_truncated") +
		c("counted_frees") + c("free_cache_unresolved")
	if frees == 0 || frees != freed {
		t.Errorf("free events %d, but freed+untracked+null+bulk_truncated+counted+unresolved = %d", frees, freed)
	}
}

// TestPageAllocations: pages held in pipes are tracked with their order,
// GFP flags and migrate type, under the pipe write path.
func TestPageAllocations(t *testing.T) {
	bpftest.Require(t)
	tr, err := Open(Config{Tracking: TrackFull, Kinds: []tracer.Kind{tracer.KindSlab, tracer.KindPage}, MaxOutstanding: 1 << 18})
	if err != nil {
		t.Fatalf("Open: %+v", err)
	}
	defer tr.Close()
	const n = 500
	c := bpftest.StartPipeFiller(t, n)
	c.Wait(t, "filled")
	if err := tr.Detach(); err != nil {
		t.Fatal(err)
	}
	snap, err := tr.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	checkAccounting(t, snap)
	// pipe_write became anon_pipe_write in 6.14.
	name := "anon_pipe_write"
	if _, err := os.Stat("/proc/kallsyms"); err == nil && !kallsymsHas("anon_pipe_write") {
		name = "pipe_write"
	}
	lo, hi := funcRange(t, name)
	var pages int
	for _, r := range snap.Records {
		if int(r.PID) != c.PID || r.Kind != tracer.KindPage || !stackHas(snap.Stacks[r.Stack], lo, hi) {
			continue
		}
		pages++
		if r.Order != 0 || r.GFP == 0 || r.Migrate == 0 || r.BytesAlloc != 4096 || r.Cache != "" {
			t.Errorf("pipe page record %+v: want order 0, GFP flags, a migrate type, 4096 bytes, no cache", r)
			break
		}
	}
	if pages < n*98/100 {
		t.Errorf("%d page allocations under %s, want %d", pages, name, n)
	}
	var pageTotal uint64
	for _, tot := range snap.Totals {
		if int(tot.PID) == c.PID && tot.Kind == tracer.KindPage {
			pageTotal += tot.Count
		}
	}
	if pageTotal < uint64(pages) {
		t.Errorf("page totals %d below the %d outstanding", pageTotal, pages)
	}
}

func kallsymsHas(name string) bool {
	b, err := os.ReadFile("/proc/kallsyms")
	return err == nil && strings.Contains(string(b), " "+name+"\n")
}

// TestStackCollisionsRecovered: with a tiny stack map most stacks collide;
// the second-chance store keeps them, so none is lost and the leak's stacks
// are whole.
func TestStackCollisionsRecovered(t *testing.T) {
	bpftest.Require(t)
	tr, err := Open(Config{Tracking: TrackFull, MaxStacks: 8, MaxOutstanding: 1 << 16})
	if err != nil {
		t.Fatalf("Open: %+v", err)
	}
	defer tr.Close()
	const n = 1000
	l := bpftest.StartLeaker(t, n)
	if err := tr.Detach(); err != nil {
		t.Fatal(err)
	}
	snap, err := tr.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if !probeFeatures().atomics {
		// The second-chance store claims its slots with fetch-add: without
		// BPF atomics, collisions are counted as lost stacks.
		if got := counter(snap, "stack_lost_collision"); got == 0 {
			t.Fatal("no stack collision counted in an 8-bucket stack map")
		}
		return
	}
	if got := counter(snap, "stack_collision_recovered"); got == 0 {
		t.Fatal("no stack collided in an 8-bucket stack map")
	}
	if got := counter(snap, "stack_lost_collision"); got != 0 {
		t.Errorf("stack_lost_collision = %d with room in the second-chance store", got)
	}
	var full int
	for _, c := range countEventfd(t, snap, l.PID) {
		if c == n {
			full++
		}
	}
	if full < 3 {
		t.Errorf("stacks through do_eventfd with all %d records: %d, want >= 3 (%v)", n, full, countEventfd(t, snap, l.PID))
	}
}

// TestUntracedFreesVisible makes the kernel free maple tree nodes through
// paths without a tracepoint (kmem_cache_free_bulk; kfree_rcu into RCU
// sheaves from 6.18). Where those are hooked (fentry or kprobes), the frees
// must be matched; where not (no fentry or kprobes), the caches whose
// objects were freed unseen must be reported per cache instead of showing
// silent false leaks.
func TestUntracedFreesVisible(t *testing.T) {
	bpftest.Require(t)
	tr, err := Open(Config{Tracking: TrackFull, MaxOutstanding: 1 << 18, MaxStacks: 1 << 14})
	if err != nil {
		t.Fatalf("Open: %+v", err)
	}
	defer tr.Close()
	c := bpftest.StartMmapChurn(t, 20000)
	c.Walk(t)
	c.Wait(t, "walked")
	if err := tr.Detach(); err != nil {
		t.Fatal(err)
	}
	snap, err := tr.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var replaced, bulkEvents uint64
	for _, k := range snap.Meta.Counters {
		switch k.Name {
		case "alloc_at_tracked_ptr":
			replaced = k.Value
		case "events_kmem_cache_free_bulk", "events_kvfree_call_rcu":
			bulkEvents += k.Value
		}
	}
	t.Logf("untraced free paths hooked: %v (%d objects freed through them); alloc_at_tracked_ptr %d; untraced per cache %v", tr.BulkFreesHooked(), bulkEvents, replaced, snap.UntracedFrees)
	if tr.BulkFreesHooked() {
		// Address spaces are maple trees, whose nodes are freed in bulk,
		// from 6.1; before, mmap churn frees nothing in bulk.
		if bulkEvents == 0 && hasSlabCache(t, "maple_node") {
			t.Errorf("kmem_cache_free_bulk and kvfree_call_rcu hooked but never seen during 20000 mmap/munmap rounds")
		}
		if n := snap.UntracedFrees["maple_node"]; n > 100 {
			t.Errorf("maple_node: %d objects reused while tracked although bulk frees are hooked", n)
		}
		return
	}
	var sum uint64
	for _, n := range snap.UntracedFrees {
		sum += n
	}
	if replaced == 0 || sum != replaced {
		t.Errorf("alloc_at_tracked_ptr %d, per-cache untraced frees %v (sum %d): want a non-zero count split by cache", replaced, snap.UntracedFrees, sum)
	}
	if snap.UntracedFrees["maple_node"] == 0 {
		t.Errorf("maple_node not among the caches with untraced frees: %v", snap.UntracedFrees)
	}
}

// hasSlabCache reports whether /proc/slabinfo lists a cache of this name.
func hasSlabCache(t *testing.T, name string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/slabinfo")
	if err != nil {
		t.Fatalf("reading /proc/slabinfo: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == name {
			return true
		}
	}
	return false
}

// TestCountMode: top's mode counts slab allocations and frees per cache and
// records no slab object. Frees of objects allocated before tracing began
// count too (a leaker's eventfds released during the capture), and kfree,
// which names no cache, finds its kmalloc cache from the object. Every attach
// mode the kernel offers.
func TestCountMode(t *testing.T) {
	bpftest.Require(t)
	for _, mode := range []Mode{ModeRawTP, ModeTPBTF, ModeTracepoint, ModeFentry, ModeKprobe} {
		t.Run(string(mode), func(t *testing.T) {
			const before, during = 2000, 3000
			old := bpftest.StartLeaker(t, before)
			tr, err := Open(Config{Mode: mode, Tracking: TrackCount})
			if err != nil {
				if (mode == ModeFentry || mode == ModeKprobe) && errors.Is(err, ErrAttach) {
					old.Release(t)
					t.Skipf("this kernel cannot attach %s: %v", mode, err)
				}
				t.Fatalf("Open: %+v", err)
			}
			defer tr.Close()
			for _, n := range tr.Notes() {
				if strings.Contains(n, "slab caches") {
					t.Errorf("note: %s", n)
				}
			}
			l := bpftest.StartLeaker(t, during)
			old.Release(t)
			// Files are freed after an RCU grace period on some kernels.
			var filp, eventfdCtx CacheStat
			var stats []CacheStat
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
				if stats, err = tr.CacheStats(); err != nil {
					t.Fatal(err)
				}
				filp, eventfdCtx = CacheStat{}, CacheStat{}
				for _, s := range stats {
					if s.Name == "filp" {
						filp = s
					}
					// eventfd_ctx is a kmalloc (a random kmalloc cache where the kernel has them).
					if strings.HasPrefix(s.Name, "kmalloc-") && s.Allocs >= during && s.Frees >= before && s.Size > 0 && s.Size <= 128 {
						eventfdCtx = s
					}
				}
				if filp.Frees >= before && eventfdCtx.Name != "" {
					break
				}
			}
			l.Release(t)
			if filp.Allocs < during || filp.Frees < before {
				t.Errorf("filp: %d allocations and %d frees, want >= %d and >= %d (the files of eventfds made before tracing count when freed)", filp.Allocs, filp.Frees, during, before)
			}
			// Recording modes count only frees of allocations made since they
			// started: the held eventfds would leave DIFF >= during.
			// A free counted twice (by both programs of a free hook) would
			// take it below zero.
			if d := filp.Diff(); d <= during-before-before/2 || d >= during-before/2 {
				t.Errorf("filp DIFF %+d, want about %d (%d made, %d older ones freed)", d, during-before, during, before)
			}
			if eventfdCtx.Name == "" {
				t.Errorf("no kmalloc cache of at most 128 bytes with >= %d allocations and >= %d frees (eventfd_ctx, freed by kfree): %+v", during, before, stats)
			}
			if err := tr.Detach(); err != nil {
				t.Fatal(err)
			}
			snap, err := tr.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			checkAccounting(t, snap)
			if got := counter(snap, "counted_allocs"); got < during {
				t.Errorf("counted_allocs %d, want >= %d", got, during)
			}
			// Every cache is registered at start: frees whose cache is not
			// found are those of kmalloc-large objects made before it.
			if got := counter(snap, "free_cache_unresolved"); got > 100 {
				t.Errorf("free_cache_unresolved %d: the slab caches were not all registered", got)
			}
			if got := counter(snap, "stacks_walked"); got != 0 {
				t.Errorf("count mode walked %d stacks", got)
			}
			// Only kmalloc-large (and objects whose cache could not be read) are recorded.
			var large int
			for _, r := range snap.Records {
				if r.Cache == "kmalloc-large" || r.Cache == "" {
					large++
					continue
				}
				t.Errorf("count mode recorded a %s object (%+v)", r.Cache, r)
				break
			}
			t.Logf("%s: filp %+v; %s %+v; records %d; free_cache_unresolved %d; nested_rescued %d; prog_recursion_misses %d", mode, filp, eventfdCtx.Name, eventfdCtx, large,
				counter(snap, "free_cache_unresolved"), counter(snap, "nested_rescued"), counter(snap, "prog_recursion_misses"))
		})
	}
}
