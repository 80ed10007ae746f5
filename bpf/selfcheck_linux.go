package bpf

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/kmemprof/kmemprof/tracer"
)

// This file holds the tracer's half of the self-check (tracer.RunSelfCheck):
// what the outstanding table holds at one instant, counted per slab cache
// while the programs still run, so that the caller can read the kernel's
// own counts just before and just after it.

// CountTracked counts the outstanding table per slab cache while the
// programs run. kernel, when not nil, is called just before and just after
// the table is read, and nothing else happens between those calls: the
// caller reads the kernel's own counts there, so that the tracked figures
// sit between two readings of the kernel's. Cache names are resolved after
// the second call. It returns an error when the table or the cache names
// cannot be read.
func (t *Tracer) CountTracked(kernel func()) (*TrackedCounts, error) {
	type byCache struct {
		objects, bytes uint64
		unsized        uint64 // records without their bytes: sized from the cache below
	}
	slab := map[uint64]*byCache{}
	var pageBytes uint64
	if kernel != nil {
		kernel()
	}
	taken := time.Now()
	_, err := t.readTable(false, func(_ uint64, v *kmemprofAllocInfo) {
		switch tracer.Kind(v.Kind) {
		case tracer.KindPage:
			pageBytes += uint64(v.BytesAlloc)
			return
		case tracer.KindSlab:
		default:
			return
		}
		if v.Cache&kmallocIDBase != 0 && v.Cache < 1<<63 && v.Cache&0xffff == 0 {
			pageBytes += uint64(v.BytesAlloc) // kmalloc-large
			return
		}
		c := slab[v.Cache]
		if c == nil {
			c = &byCache{}
			slab[v.Cache] = c
		}
		c.objects++
		c.bytes += uint64(v.BytesAlloc)
		if v.BytesAlloc == 0 {
			c.unsized++
		}
	})
	if kernel != nil {
		kernel()
	}
	if err != nil {
		return nil, fmt.Errorf("counting the outstanding table: %w", err)
	}
	// Objects handed to kfree_rcu lately, which the kernel may still hold.
	rcuNow, err := t.readRCUFrees()
	if err != nil {
		return nil, fmt.Errorf("reading kfree_rcu's counts: %w", err)
	}
	rcu := t.recentRCU(rcuNow, taken)
	// kmem_cache_alloc_bulk's objects, counted (not tracked) since the start.
	bulk, err := readPerCache(t.maps.BulkAllocs)
	if err != nil {
		return nil, fmt.Errorf("reading kmem_cache_alloc_bulk's counts: %w", err)
	}
	ids := make([]uint64, 0, len(slab)+len(bulk))
	for id := range slab {
		ids = append(ids, id)
	}
	for id := range bulk {
		ids = append(ids, id)
	}
	for id := range rcu {
		ids = append(ids, id)
	}
	if err := t.resolveCaches(ids); err != nil {
		return nil, err
	}
	caches, err := t.readCaches()
	if err != nil {
		return nil, err
	}
	out := &TrackedCounts{Taken: taken, Objects: map[string]uint64{}, Bytes: map[string]uint64{}, PageBytes: pageBytes}
	for id, c := range slab {
		name := caches.name(id)
		if id == 0 || name == "[unknown cache]" {
			out.Unnamed += c.objects
			continue
		}
		out.Objects[name] += c.objects
		out.Bytes[name] += c.bytes + c.unsized*uint64(caches[id].size)
	}
	out.BulkHooked = t.allocBulkHooked
	for id, n := range rcu {
		if name := caches.name(id); name != "[unknown cache]" {
			if out.RecentRCU == nil {
				out.RecentRCU = map[string]uint64{}
			}
			out.RecentRCU[name] += n
		}
	}
	for id, n := range bulk {
		if name := caches.name(id); name != "[unknown cache]" {
			if out.BulkAllocs == nil {
				out.BulkAllocs = map[string]uint64{}
			}
			out.BulkAllocs[name] += n
		}
	}
	return out, nil
}

// EveryAllocation says whether the capture records every slab allocation
// the kernel's hooks report: no filter (--pid, --follow, --cgroup, --memcg,
// --cache, --min-size), no sampling, slab traced. When it does not, why
// says what prevents it; the self-check's growth comparison needs it.
func (t *Tracer) EveryAllocation() (ok bool, why string) {
	var not []string
	if !t.cfg.has(tracer.KindSlab) {
		not = append(not, "slab allocations are not traced")
	}
	if t.cfg.Tracking == TrackSample {
		not = append(not, fmt.Sprintf("--mode sample records one allocation in %d", t.cfg.SampleEvery))
	}
	if t.cfg.Tracking == TrackCount {
		not = append(not, "allocations are counted, not recorded")
	}
	var filters []string
	for _, f := range []struct {
		on   bool
		flag string
	}{{t.cfg.PID != 0, "--pid"}, {t.cfg.Follow, "--follow"}, {t.cfg.CgroupPath != "", "--cgroup"}, {t.cfg.MemcgID != 0, "--memcg"},
		{len(t.cfg.Caches) > 0, "--cache"}, {t.cfg.MinSize != 0, "--min-size"}} {
		if f.on {
			filters = append(filters, f.flag)
		}
	}
	switch len(filters) {
	case 0:
	case 1:
		not = append(not, filters[0]+" keeps only some allocations")
	default:
		not = append(not, strings.Join(filters, " and ")+" keep only some allocations")
	}
	if len(not) > 0 {
		return false, strings.Join(not, "; ")
	}
	return true, ""
}

// DetachFreesForTest closes the links of every free hook (kfree,
// kmem_cache_free, page and percpu frees, bulk and RCU frees) while the
// allocation hooks keep running: from then on frees are missed, as a
// broken free hook would miss them. For tests of the self-check only. It
// returns how many links it closed.
func (t *Tracer) DetachFreesForTest() (int, error) {
	return t.detachForTest(func(a attachment) bool { return !a.alloc && strings.Contains(a.target, "free") })
}

// DetachAllocsForTest closes the links of every allocation hook while the
// free hooks keep running: from then on allocations are missed. For tests
// of the self-check only. It returns how many links it closed.
func (t *Tracer) DetachAllocsForTest() (int, error) {
	return t.detachForTest(func(a attachment) bool { return a.alloc })
}

// detachForTest closes the links whose attachment match selects.
func (t *Tracer) detachForTest(match func(attachment) bool) (int, error) {
	if t.plan == nil {
		return 0, errors.New("no plan: the tracer is not attached")
	}
	chosen := map[*ebpf.Program]bool{}
	for _, a := range t.plan.attach {
		if p := t.coll.Programs[a.prog]; p != nil && match(a) {
			chosen[p] = true
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var (
		links []link.Link
		progs []*ebpf.Program
		roles []progRole
		errs  []error
	)
	n := 0
	for i, l := range t.links {
		if chosen[t.progs[i]] {
			if err := l.Close(); err != nil {
				errs = append(errs, err)
			}
			n++
			continue
		}
		links, progs, roles = append(links, l), append(progs, t.progs[i]), append(roles, t.progRoles[i])
	}
	t.links, t.progs, t.progRoles = links, progs, roles
	// A lazily attached backup of a detached hook must not come back.
	rest := t.pending[:0]
	for _, pb := range t.pending {
		if !chosen[pb.primary] {
			rest = append(rest, pb)
		}
	}
	t.pending = rest
	return n, errors.Join(errs...)
}

// rcuWindow is how long after an object is handed to kfree_rcu the kernel
// may still hold it: kfree_rcu drains its batches up to 5 s later
// (KFREE_DRAIN_JIFFIES, 6.1+), after a grace period.
const rcuWindow = 10 * time.Second

// rcuHistory keeps, once a second, the cumulative count of tracked objects
// handed to kfree_rcu per cache (rcu_frees), for rcuWindow: what was
// handed over in the last rcuWindow is what the kernel may not have freed.
type rcuHistory struct {
	mu      sync.Mutex
	samples []rcuSample
}

type rcuSample struct {
	at     time.Time
	counts map[uint64]uint64
}

// readRCUFrees reads rcu_frees.
func (t *Tracer) readRCUFrees() (map[uint64]uint64, error) { return readPerCache(t.maps.RcuFrees) }

// sampleRCU records rcu_frees now; called every second while tracing.
func (t *Tracer) sampleRCU(now time.Time) {
	counts, err := t.readRCUFrees()
	if err != nil {
		return // the last good sample stays; the window only gets wider
	}
	h := &t.rcu
	h.mu.Lock()
	defer h.mu.Unlock()
	h.samples = append(h.samples, rcuSample{at: now, counts: counts})
	// Keep one sample at least rcuWindow old.
	for len(h.samples) > 1 && now.Sub(h.samples[1].at) >= rcuWindow {
		h.samples = h.samples[1:]
	}
}

// recentRCU returns, per cache id, the tracked objects handed to kfree_rcu
// in the last rcuWindow (since the start when the capture is younger).
func (t *Tracer) recentRCU(now map[uint64]uint64, at time.Time) map[uint64]uint64 {
	h := &t.rcu
	h.mu.Lock()
	defer h.mu.Unlock()
	var base map[uint64]uint64
	for i := len(h.samples) - 1; i >= 0; i-- {
		if at.Sub(h.samples[i].at) >= rcuWindow {
			base = h.samples[i].counts
			break
		}
	}
	out := map[uint64]uint64{}
	for id, n := range now {
		if d := n - min(base[id], n); d > 0 {
			out[id] = d
		}
	}
	return out
}
