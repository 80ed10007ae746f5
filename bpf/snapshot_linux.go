package bpf

import (
	"errors"
	"fmt"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/cilium/ebpf"

	"github.com/kmemprof/kmemprof/tracer"
)

// batchSize is how many map entries one BPF_MAP_LOOKUP_BATCH call reads.
const batchSize = 4096

// Snapshot reads the outstanding allocations, the per-stack totals, the
// stacks they refer to and every counter. Call Detach first for a consistent
// end-of-capture view; while programs run, entries inserted or deleted during
// the read may or may not appear.
func (t *Tracer) Snapshot() (*tracer.Snapshot, error) {
	clock, err := newMonoToWall()
	if err != nil {
		return nil, err
	}
	comms := map[[16]int8]string{}
	snap := &tracer.Snapshot{Stacks: map[tracer.StackID][]uint64{}, Taken: time.Now(), Platform: Platform}

	snap.Partial = map[tracer.StackID]bool{}
	if t.cfg.Tracking == TrackSample {
		snap.SampleEvery = uint64(t.cfg.SampleEvery)
	}
	n, err := t.readTable(true, nil)
	if err != nil {
		return nil, fmt.Errorf("reading the outstanding table: %w", err)
	}
	snap.Records = make([]tracer.Record, 0, n)
	cacheIDs := make([]uint64, 0, n) // per record, resolved to names and sizes below
	_, err = t.readTable(false, func(key uint64, v *kmemprofAllocInfo) {
		stack := tracer.StackID(v.StackId)
		if v.StackId == stackNotWalked {
			// Adaptive mode: the site was not hot yet. Show the call site
			// as a partial stack, one synthetic id per site.
			stack = t.partialID(v.Site)
			snap.Stacks[stack] = []uint64{v.Site}
			snap.Partial[stack] = true
		}
		if tracer.Kind(v.Kind) == tracer.KindSlab {
			stack = t.withLeaf(t.withCaller(stack, v.Site), v.Order)
		}
		snap.Records = append(snap.Records, tracer.Record{
			Key: tracer.Key{
				Kind:     tracer.Kind(v.Kind),
				Stack:    stack,
				Comm:     commString(comms, v.Comm),
				PID:      v.Tgid,
				CgroupID: v.Cgroup,
				MemcgID:  v.Memcg,
			},
			Addr:       keyAddr(key),
			BytesReq:   uint64(v.BytesReq),
			BytesAlloc: uint64(v.BytesAlloc),
			Time:       clock.at(v.Ts),
			Accounted:  v.Accounted != 0,
		})
		cacheIDs = append(cacheIDs, v.Cache)
	})
	if err != nil {
		return nil, fmt.Errorf("reading the outstanding table: %w", err)
	}
	// Totals: read before the caches are named, so that caches whose
	// allocations were all freed are resolved too.
	var totCaches []uint64
	var key kmemprofTotalsKey
	var vals []kmemprofTotalsVal
	var totNow map[kmemprofTotalsKey]kmemprofTotalsVal // Config.Continuous
	if t.cont != nil {
		totNow = map[kmemprofTotalsKey]kmemprofTotalsVal{}
	}
	it := t.maps.Totals.Iterate()
	for it.Next(&key, &vals) {
		if t.cont != nil {
			d := t.cont.interval(totNow, key, sumTotals(vals))
			if d.Count == 0 && d.Bytes == 0 {
				continue
			}
			vals = append(vals[:0], d)
		}
		stack := tracer.StackID(key.StackId)
		if tracer.Kind(key.Kind) == tracer.KindSlab {
			stack = t.withLeaf(stack, key.Fn)
		}
		tot := tracer.Total{Key: tracer.Key{
			Kind:     tracer.Kind(key.Kind),
			Stack:    stack,
			Comm:     commString(comms, key.Comm),
			PID:      key.Tgid,
			CgroupID: key.Cgroup,
			MemcgID:  key.Memcg,
		}}
		for _, v := range vals {
			tot.Count += v.Count
			tot.Bytes += v.Bytes
		}
		snap.Totals = append(snap.Totals, tot)
		totCaches = append(totCaches, key.Cache)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading totals: %w", err)
	}
	missed, err := t.readMissedFrees()
	if err != nil {
		return nil, err
	}
	resolve := append(cacheIDs, totCaches...)
	for id := range missed {
		resolve = append(resolve, id)
	}
	if err := t.resolveCaches(resolve); err != nil {
		return nil, err
	}
	caches, err := t.readCaches()
	if err != nil {
		return nil, err
	}
	for id, n := range missed {
		if (id&pageDetailBit != 0 && id < 1<<63) || id == 0 {
			continue // pages and percpu: no cache to mark
		}
		if snap.UntracedFrees == nil {
			snap.UntracedFrees = map[string]uint64{}
		}
		snap.UntracedFrees[caches.name(id)] += n
	}
	snap.Reclaimable = map[string]bool{}
	for _, d := range caches {
		if d.reclaim {
			snap.Reclaimable[d.name] = true
		}
	}
	for i := range snap.Records {
		r := &snap.Records[i]
		id := cacheIDs[i]
		if r.Kind == tracer.KindPage {
			// No cache: the id carries the gfp, order and migrate type.
			r.GFP, r.Order, r.Migrate = pageDetail(id)
			continue
		}
		r.Cache = caches.name(id)
		if ci, ok := caches[id]; ok && r.Kind == tracer.KindSlab && r.BytesAlloc == 0 {
			// Hooks that pass the cache, not the sizes: the sizes are the
			// cache's (the requested size is kmalloc's where it was given).
			r.BytesAlloc = uint64(ci.size)
			if r.BytesReq == 0 {
				r.BytesReq = uint64(ci.objectSize)
			}
			r.Accounted = r.Accounted || ci.account
		}
	}

	for i := range snap.Totals {
		tot := &snap.Totals[i]
		id := totCaches[i]
		if tot.Kind == tracer.KindPage {
			tot.GFP, tot.Order, tot.Migrate = pageDetail(id)
			continue
		}
		tot.Cache = caches.name(id)
		if ci, ok := caches[id]; ok && tot.Kind == tracer.KindSlab && tot.Bytes == 0 {
			// kmem_cache_alloc in raw modes counts no bytes in the kernel.
			tot.Bytes = tot.Count * uint64(ci.size)
		}
	}

	if err := t.readStacks(snap); err != nil {
		return nil, err
	}
	for id, c := range t.callerBase {
		if st, ok := snap.Stacks[c.base]; ok {
			snap.Stacks[id] = withCallerFrame(st, c.site)
		}
	}
	for id, base := range t.leafBase {
		if st, ok := snap.Stacks[base]; ok {
			snap.Stacks[id] = st
			if snap.Partial[base] {
				snap.Partial[id] = true
			}
			if snap.Leaf == nil {
				snap.Leaf = map[tracer.StackID]uint64{}
			}
			snap.Leaf[id] = t.leafAddr(id)
		}
	}
	if t.cont != nil {
		if err := t.trim(snap, totNow); err != nil {
			return nil, fmt.Errorf("trimming the kernel maps: %w", err)
		}
	}
	counters, err := t.readCounters()
	if err != nil {
		return nil, err
	}
	snap.Meta = t.meta(counters)
	return snap, nil
}

// pageDetailBit marks the cache ids of page allocations (PAGE_DETAIL in
// kmemprof.h).
const pageDetailBit = uint64(1) << 48

// readMissedFrees reads, per cache id, how many allocations were found at the
// address of a tracked one (their old record's free was never seen).
func (t *Tracer) readMissedFrees() (map[uint64]uint64, error) {
	out, err := readPerCache(t.maps.MissedFrees)
	if err != nil {
		return nil, fmt.Errorf("reading missed frees: %w", err)
	}
	return out, nil
}

// readPerCache reads a map of counts by cache id (missed_frees,
// bulk_allocs, rcu_frees).
func readPerCache(m *ebpf.Map) (map[uint64]uint64, error) {
	out := map[uint64]uint64{}
	var id, n uint64
	it := m.Iterate()
	for it.Next(&id, &n) {
		out[id] = n
	}
	return out, it.Err()
}

// pageDetail decodes the cache id of a page allocation (PAGE_DETAIL in
// kmemprof.h): gfp | order << 32 | migratetype << 40. Migrate is the
// migrate type plus one, 0 meaning unknown.
func pageDetail(id uint64) (gfp uint32, order, migrate uint8) {
	return uint32(id), uint8(id >> 32), uint8(id>>40) + 1
}

// leafSlotShift places the allocator function's slot in a stack id: the
// stacks of kprobe and fentry modes are kept per allocator function, which
// becomes their leaf frame (Snapshot.Leaf). Real and partial stack ids stay
// below it.
const leafSlotShift = 50

// withLeaf returns the stack id under which a slab allocation of the
// allocator function slot fn-1 (0: none) is kept.
func (t *Tracer) withLeaf(stack tracer.StackID, fn uint8) tracer.StackID {
	if fn == 0 || stack < 0 || t.plan == nil || int(fn) > len(t.plan.slotAddrs) {
		return stack
	}
	addr := t.plan.slotAddrs[fn-1]
	if addr == 0 {
		return stack
	}
	id := stack | tracer.StackID(fn)<<leafSlotShift
	if t.leafBase == nil {
		t.leafBase = map[tracer.StackID]tracer.StackID{}
	}
	t.leafBase[id] = stack
	return id
}

// callerStackBase numbers the stacks withCaller makes: above the partial
// stacks, below the allocator function slots of withLeaf.
const callerStackBase = tracer.StackID(1) << 44

// callerStack is a stack walked at an allocator's kprobe with its caller
// put back (withCaller).
type callerStack struct {
	base tracer.StackID
	site uint64
}

// withCaller returns the stack id under which a kprobe mode allocation
// walked as stack, whose caller's return address is site, is kept. A
// kprobe's stack is walked from the allocator's entry, where the return
// address into the caller is still in a register on arm64 (the link
// register): its frame-record unwinder goes from the allocator straight to
// the caller's caller, and the frame that called the allocator, the one
// that matters most, is lost. The kprobe read it (site): the stack is kept
// once per site, with the caller put back (withCallerFrame). Other modes and
// architectures keep their stack.
func (t *Tracer) withCaller(stack tracer.StackID, site uint64) tracer.StackID {
	if t.mode != ModeKprobe || runtime.GOARCH != "arm64" || stack < 0 || stack >= partialStackBase || site == 0 {
		return stack
	}
	k := callerStack{stack, site}
	if id, ok := t.callerIDs[k]; ok {
		return id
	}
	if t.callerIDs == nil {
		t.callerIDs, t.callerBase = map[callerStack]tracer.StackID{}, map[tracer.StackID]callerStack{}
	}
	id := callerStackBase + tracer.StackID(len(t.callerIDs))
	t.callerIDs[k], t.callerBase[id] = id, k
	return id
}

// withCallerFrame returns the frames of a stack walked at an allocator's
// entry with site, its caller's return address, after the first frame
// (the allocator, where the walk began), unless the walk has it already.
func withCallerFrame(st []uint64, site uint64) []uint64 {
	for i := 0; i < len(st) && i < 4; i++ {
		if st[i] == site {
			return st
		}
	}
	if len(st) == 0 {
		return []uint64{site}
	}
	out := make([]uint64, 0, len(st)+1)
	out = append(out, st[0], site)
	return append(out, st[1:]...)
}

// leafAddr returns the allocator function of a stack id made by withLeaf.
func (t *Tracer) leafAddr(id tracer.StackID) uint64 {
	fn := int(id >> leafSlotShift)
	if fn == 0 || t.plan == nil || fn > len(t.plan.slotAddrs) {
		return 0
	}
	return t.plan.slotAddrs[fn-1]
}

// partialID returns the synthetic stack id of a call site, the same for the
// whole capture so that series of snapshots line up.
func (t *Tracer) partialID(site uint64) tracer.StackID {
	if t.partialIDs == nil {
		t.partialIDs = map[uint64]tracer.StackID{}
	}
	id, ok := t.partialIDs[site]
	if !ok {
		id = partialStackBase + tracer.StackID(len(t.partialIDs))
		t.partialIDs[site] = id
	}
	return id
}

// Usage sums, by stack, the outstanding allocations now: what a growth
// series records at every interval. It reads the table while the programs
// run, so allocations made or freed during the read may or may not count.
func (t *Tracer) Usage() (map[tracer.StackID]tracer.Usage, error) {
	type key struct {
		stack tracer.StackID
		cache uint64
	}
	type val struct{ objects, bytes uint64 }
	byKey := map[key]*val{}
	var ids []uint64
	_, err := t.readTable(false, func(_ uint64, v *kmemprofAllocInfo) {
		stack := tracer.StackID(v.StackId)
		if v.StackId == stackNotWalked {
			stack = t.partialID(v.Site)
		}
		if tracer.Kind(v.Kind) == tracer.KindSlab {
			stack = t.withLeaf(t.withCaller(stack, v.Site), v.Order)
		}
		k := key{stack, 0}
		if v.BytesAlloc == 0 && v.Kind == uint8(tracer.KindSlab) {
			k.cache = v.Cache // sized below from the cache
			ids = append(ids, v.Cache)
		}
		e := byKey[k]
		if e == nil {
			e = &val{}
			byKey[k] = e
		}
		e.objects++
		e.bytes += uint64(v.BytesAlloc)
	})
	if err != nil {
		return nil, fmt.Errorf("reading the outstanding table: %w", err)
	}
	if err := t.resolveCaches(ids); err != nil {
		return nil, err
	}
	caches, err := t.readCaches()
	if err != nil {
		return nil, err
	}
	out := make(map[tracer.StackID]tracer.Usage, len(byKey))
	for k, e := range byKey {
		u := out[k.stack]
		u.Objects += e.objects
		u.Bytes += e.bytes
		if k.cache != 0 {
			u.Bytes += e.objects * uint64(caches[k.cache].size)
		}
		out[k.stack] = u
	}
	return out, nil
}

// stackNotWalked is STACK_NOT_WALKED of kmemprof.h.
const stackNotWalked = -6

// partialStackBase numbers the synthetic stacks of call sites; real stack
// ids are below the stack map's size (at most 2^32).
const partialStackBase = tracer.StackID(1) << 40

// windowBuckets is how many table buckets readTable maps at a time: small
// windows keep the process's resident memory low however large the table.
const windowBuckets = 1 << 16

// readTable calls fn for every occupied slot of the outstanding table and
// returns how many there were. With count set it only counts. The arrays are
// memory-mapped a window at a time, so only occupied records are copied and
// the mapping never adds more than one window to the resident set.
func (t *Tracer) readTable(count bool, fn func(key uint64, v *kmemprofAllocInfo)) (int, error) {
	if t.hashTable {
		return t.readHashTable(count, fn)
	}
	keysMap, recsMap := t.maps.TableKeys, t.maps.TableRecs
	buckets := int(keysMap.MaxEntries())
	recSize := int((unsafe.Sizeof(kmemprofAllocInfo{}) + 7) &^ 7) // array elements are 8-byte aligned
	var rec kmemprofAllocInfo
	recBytes := unsafe.Slice((*byte)(unsafe.Pointer(&rec)), unsafe.Sizeof(rec))
	n := 0
	for b0 := 0; b0 < buckets; b0 += windowBuckets {
		nb := min(windowBuckets, buckets-b0)
		keys, err := unix.Mmap(keysMap.FD(), int64(b0*bucketWays*8), nb*bucketWays*8, unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			return n, fmt.Errorf("mapping table keys: %w", err)
		}
		var recs []byte
		if !count {
			recs, err = unix.Mmap(recsMap.FD(), int64(b0*bucketWays*recSize), nb*bucketWays*recSize, unix.PROT_READ, unix.MAP_SHARED)
			if err != nil {
				unix.Munmap(keys)
				return n, fmt.Errorf("mapping table records: %w", err)
			}
		}
		words := unsafe.Slice((*uint64)(unsafe.Pointer(&keys[0])), len(keys)/8)
		for i, k := range words {
			if k == 0 {
				continue
			}
			n++
			if !count {
				copy(recBytes, recs[i*recSize:])
				fn(k, &rec)
			}
		}
		unix.Munmap(keys)
		if recs != nil {
			unix.Munmap(recs)
		}
	}
	return n, nil
}

// readHashTable is readTable for the hash-map table of kernels without BPF
// atomics, read in batches.
func (t *Tracer) readHashTable(count bool, fn func(key uint64, v *kmemprofAllocInfo)) (int, error) {
	m := t.maps.TableHash
	keys := make([]uint64, batchSize)
	vals := make([]kmemprofAllocInfo, batchSize)
	var cursor ebpf.MapBatchCursor
	n := 0
	for {
		got, err := m.BatchLookup(&cursor, keys, vals, nil)
		for i := 0; i < got; i++ {
			n++
			if !count {
				fn(keys[i], &vals[i])
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("reading the outstanding table: %w", err)
		}
	}
}

// keyAddr returns the address of a table key, (address << 2) | kind: kernel
// addresses lost their top two bits, which equal the third.
func keyAddr(key uint64) uint64 {
	a := key >> 2
	if a&(1<<61) != 0 {
		a |= 3 << 62
	}
	return a
}

func commString(cache map[[16]int8]string, c [16]int8) string {
	if s, ok := cache[c]; ok {
		return s
	}
	b := make([]byte, 0, 16)
	for _, ch := range c {
		if ch == 0 {
			break
		}
		b = append(b, byte(ch))
	}
	s := string(b)
	cache[c] = s
	return s
}

type cacheDetails struct {
	name             string
	objectSize, size uint32
	account, reclaim bool
}

type cacheNames map[uint64]cacheDetails

func (c cacheNames) name(id uint64) string {
	if id == 0 {
		return ""
	}
	if d, ok := c[id]; ok {
		return d.name
	}
	if n := kmallocName(id); n != "" {
		return n
	}
	return "[unknown cache]"
}

func (t *Tracer) readCaches() (cacheNames, error) {
	out := cacheNames{}
	var id uint64
	var ci kmemprofCacheInfo
	it := t.maps.Caches.Iterate()
	for it.Next(&id, &ci) {
		b := make([]byte, 0, len(ci.Name))
		for _, ch := range ci.Name {
			if ch == 0 {
				break
			}
			b = append(b, byte(ch))
		}
		out[id] = cacheDetails{name: string(b), objectSize: ci.ObjectSize, size: ci.Size, account: ci.Account != 0, reclaim: ci.Reclaim != 0}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading cache names: %w", err)
	}
	return out, nil
}

// resolveCaches runs resolve_cache for every kmem_cache pointer among ids
// that the caches map does not know yet, so that it holds their names and
// sizes. Modes without the program (classic tracepoints) name caches in the
// hot path and need nothing here.
func (t *Tracer) resolveCaches(ids []uint64) error {
	prog := t.coll.Programs["resolve_cache"]
	if prog == nil {
		return nil
	}
	m := t.maps.Caches
	done := map[uint64]bool{}
	var ci kmemprofCacheInfo
	for _, id := range ids {
		// kmem_cache pointers are kernel addresses; kmalloc ids are small.
		if id < 1<<63 || done[id] {
			continue
		}
		done[id] = true
		if err := m.Lookup(id, &ci); err == nil {
			continue
		}
		if _, err := prog.Run(&ebpf.RunOptions{Context: []uint64{id}}); err != nil {
			return fmt.Errorf("resolving slab cache %#x: %w", id, err)
		}
	}
	return nil
}

// readStacks looks up every stack id the records and totals refer to.
func (t *Tracer) readStacks(snap *tracer.Snapshot) error {
	m := t.maps.Stacks
	m2 := t.maps.Stacks2
	buf := make([]uint64, t.cfg.StackDepth)
	var buf2 kmemprofStackBuf
	want := func(id tracer.StackID) error {
		if base, ok := t.leafBase[id]; ok {
			id = base
		}
		if c, ok := t.callerBase[id]; ok {
			id = c.base
		}
		if id < 0 {
			return nil
		}
		if _, ok := snap.Stacks[id]; ok {
			return nil
		}
		if id >= tracer.StackID(t.cfg.MaxStacks) && id < partialStackBase {
			// From the second-chance store (a stack map collision).
			if err := m2.Lookup(uint32(id-tracer.StackID(t.cfg.MaxStacks)), &buf2); err != nil {
				return fmt.Errorf("reading stack %d: %w", id, err)
			}
			n := 0
			for n < len(buf2.Ips) && buf2.Ips[n] != 0 {
				n++
			}
			if n > 0 {
				snap.Stacks[id] = append([]uint64(nil), buf2.Ips[:n]...)
			}
			return nil
		}
		if err := m.Lookup(uint32(id), &buf); err != nil {
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				return nil // the builder reports it as evicted
			}
			return fmt.Errorf("reading stack %d: %w", id, err)
		}
		n := 0
		for n < len(buf) && buf[n] != 0 {
			n++
		}
		snap.Stacks[id] = append([]uint64(nil), buf[:n]...)
		return nil
	}
	for i := range snap.Records {
		if err := want(snap.Records[i].Stack); err != nil {
			return err
		}
	}
	for i := range snap.Totals {
		if err := want(snap.Totals[i].Stack); err != nil {
			return err
		}
	}
	return nil
}

func (t *Tracer) meta(c [nrCounters]uint64) tracer.Meta {
	end := t.stop
	if end.IsZero() {
		end = time.Now()
	}
	m := tracer.Meta{
		Platform:   "linux",
		Kernel:     KernelRelease(),
		AttachMode: string(t.mode),
		Hooks:      t.Hooks(),
		Start:      t.start,
		Duration:   end.Sub(t.start),
		Comments:   t.Notes(),
	}
	if t.cfg.PID != 0 {
		m.Filters = append(m.Filters, fmt.Sprintf("pid=%d", t.cfg.PID))
	}
	if t.cfg.CgroupPath != "" {
		m.Filters = append(m.Filters, "cgroup="+t.cfg.CgroupPath)
	}
	for _, c := range t.cfg.Caches {
		m.Filters = append(m.Filters, "cache="+c)
	}
	if t.cfg.MinSize != 0 {
		m.Filters = append(m.Filters, fmt.Sprintf("min-size=%d", t.cfg.MinSize))
	}
	if t.cfg.MemcgPath != "" {
		m.Filters = append(m.Filters, "memcg="+t.cfg.MemcgPath)
	}
	for i := 0; i < nrHooks; i++ {
		if c[i] != 0 || t.hooked(i) {
			m.Counters = append(m.Counters, tracer.Counter{
				Name: "events_" + hookShort(i), Value: c[i],
				Help: hookHelp(i),
			})
		}
	}
	for i := nrHooks; i < nrCounters; i++ {
		switch {
		case (i == cReturnMissed || i == cReturnNoEntry || i == cReturnAtAttach) && t.mode != ModeKprobe,
			i == cPageSiteUnknown && (t.cfg.Tracking != TrackAdaptive || !t.cfg.has(tracer.KindPage)),
			i == cBulkTruncated && !t.bulkHooked,
			i == cTreeFull && !t.cfg.Follow,
			i == cCacheUnresolved && c[i] == 0 && !t.objCache:
			continue
		}
		info := counterInfo[i]
		m.Counters = append(m.Counters, tracer.Counter{Name: info.name, Value: c[i], Help: info.help, Loss: info.loss})
	}
	if t.sites != nil {
		m.Counters = append(m.Counters, tracer.Counter{
			Name: "sites_cooled", Value: t.sites.cooled.Load(),
			Help: "times a hot call site stopped growing and its stacks stopped being walked (adaptive mode)",
		}, tracer.Counter{
			Name: "cooling_failed", Value: t.sites.failed.Load(),
			Help: "cooling rounds or site updates that failed: those sites stayed hot and kept walking stacks (cost, not data)",
		})
	}
	clockHelp := "allocation clock updates that failed: allocations until the next update got an older time (ages, --min-age)"
	if e := t.clockErr.Load(); e != nil {
		clockHelp += "; first: " + (*e).Error()
	}
	if t.cont != nil {
		m.Counters = append(m.Counters, t.cont.counters()...)
	}
	m.Counters = append(m.Counters, tracer.Counter{Name: "clock_errors", Value: t.clockErrors.Load(), Loss: true, Help: clockHelp})
	// A free hook's primary program misses the frees nested in it, which
	// its backup handles (nested_rescued); a backup misses only events its
	// primary handled. What is lost is every other program's misses, and
	// the primaries' misses that no backup made up for.
	var misses, primaryMisses uint64
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, p := range t.progs {
		st, err := p.Stats()
		if err != nil {
			continue
		}
		switch t.progRoles[i] {
		case roleBackup:
		case rolePrimary:
			primaryMisses += st.RecursionMisses
		default:
			misses += st.RecursionMisses
		}
	}
	if primaryMisses > c[cRescued] {
		misses += primaryMisses - c[cRescued]
	}
	m.Counters = append(m.Counters, tracer.Counter{
		Name: "prog_recursion_misses", Value: misses, Loss: true,
		Help: "events the kernel did not deliver because their BPF program was already running on that CPU (an interrupt's allocations during an allocation's stack walk; frees nested in a free program before its backup was attached), and no backup program handled",
	})
	if t.mode == ModeKprobe || t.kprobeMissed != 0 {
		m.Counters = append(m.Counters, tracer.Counter{
			Name: "kprobe_missed", Value: t.kprobeMissed, Loss: true,
			Help: "allocator calls the kernel's kprobes dropped: a hit while another kprobe's handler ran on that CPU, or a call beyond the kretprobe's instances (maxactive); counted on every kernel where tracefs is mounted (kretprobes made through it), else from Linux 6.7",
		})
	}
	return m
}

func (t *Tracer) hooked(i int) bool {
	for _, h := range t.hooks {
		if h == hookNames[i] {
			return true
		}
	}
	return false
}

func hookHelp(i int) string {
	switch i {
	case hookFreeBulk:
		return "objects freed by kmem_cache_free_bulk (which has no tracepoint)"
	case hookFreeRCU:
		return "objects handed to kfree_rcu/kvfree_rcu (kvfree_call_rcu), freed after a grace period in batches no tracepoint sees"
	}
	return "events seen on " + hookNames[i]
}

func hookShort(i int) string {
	n := hookNames[i]
	for j := 0; j < len(n); j++ {
		if n[j] == ':' {
			return n[j+1:]
		}
	}
	return n
}

// MadeCgroup is a cgroup made during the capture, as cgroup_mkdir saw it.
type MadeCgroup struct {
	Hierarchy uint32 // its cgroup v1 hierarchy id; 0 for cgroup v2
	ID        uint64 // the id (inode number) of its directory
	Path      string // relative to its hierarchy's root
}

// CgroupsMade returns the cgroups made since the last call, in cgroup v2 and
// in the memory controller's hierarchy (Config.MemcgHierarchy), removed ones
// included, and empties the record for those made from now on (65,536 at
// most between calls: counter cgroup_names_full).
func (t *Tracer) CgroupsMade() ([]MadeCgroup, error) {
	m := t.maps.CgroupNames
	var (
		k    kmemprofCgroupNameKey
		v    kmemprofCgroupName
		keys []kmemprofCgroupNameKey
		out  []MadeCgroup
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		b := make([]byte, 0, 64)
		for _, c := range v.Path {
			if c == 0 {
				break
			}
			b = append(b, byte(c))
		}
		out = append(out, MadeCgroup{Hierarchy: k.Hierarchy, ID: k.Id, Path: string(b)})
		keys = append(keys, k)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading the cgroup paths: %w", err)
	}
	for i := range keys {
		if err := m.Delete(&keys[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil, fmt.Errorf("clearing the cgroup paths: %w", err)
		}
	}
	return out, nil
}
