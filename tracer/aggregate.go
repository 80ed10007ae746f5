package tracer

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Options controls how Aggregate turns a Snapshot into samples. The zero
// value is ready to use: no age cut-off, cgroups labelled by id, and the
// default BPF/tracing plumbing frames trimmed.
type Options struct {
	// MinAge leaves out of the in-use values every record younger than MinAge
	// when the snapshot was taken (Snapshot.Taken - Record.Time < MinAge), so
	// that short-lived allocations that were about to be freed do not look like
	// leaks. Skipped records are counted in Aggregation.YoungSkipped and still
	// count as allocations (alloc_*). Zero or negative keeps every record.
	// A positive MinAge needs Snapshot.Taken to be set.
	MinAge time.Duration

	// CgroupPath maps a cgroup id to the path shown in the "cgroup" label. It
	// is called once per distinct non-zero id. When it is nil, or returns "",
	// the label is the decimal id.
	CgroupPath func(id uint64) string

	// TrimLeading lists function-name prefixes of frames to drop from the leaf
	// end of every stack: the BPF program and tracepoint/kprobe machinery that
	// walked the stack, which is not where the allocation was made. Only the
	// contiguous run of matching frames at the leaf end is dropped; a stack
	// that would lose every frame is kept whole. Nil means the snapshot's
	// Platform.TrimLeading; an empty non-nil slice disables trimming.
	TrimLeading []string
	// Growth, when set, gives every stack's growth over the capture
	// (Series.Growth): the profile gets growth_objects and growth_space
	// sample types (unreclaimable growth only: AggSample.LeakGrowth) and
	// the summary ranks by growth, unreclaimable first.
	Growth map[StackID]GrowthFigure
	// Reclaimable names the slab caches created with SLAB_RECLAIM_ACCOUNT
	// (with Snapshot.Reclaimable and kmalloc-rcl-*: AggSample.Reclaimable).
	Reclaimable map[string]bool
	// GFPName renders GFP flags for the gfp label of page samples, e.g.
	// "GFP_KERNEL|__GFP_COMP"; nil means hexadecimal.
	GFPName func(gfp uint32) string
	// MigrateName names a migrate type for the migratetype label of page
	// samples; nil means the snapshot's Platform.MigrateName.
	MigrateName func(mt uint8) string
	// Container names the container ("runtime:id") and the Kubernetes pod
	// (its uid) a cgroup or memcg path belongs to, for the container and
	// pod labels; "" for either when the path says nothing of it. nil: no
	// such labels.
	Container func(cgroupPath string) (container, pod string)
}

// AggSample is one group of allocations sharing a Key: one pprof sample.
type AggSample struct {
	// Key identifies the group. A stack id that was missing from the
	// snapshot's stack map has been replaced by StackLostNotFound.
	Key
	// Frames is the symbolized stack, leaf first, after trimming. A lost
	// stack (negative Key.Stack) has a single frame with Addr 0 whose
	// Function is StackLostName(Key.Stack). Samples with the same stack share
	// the slice; treat it as read-only.
	Frames []Frame
	// AllocObjects and AllocSpace count every allocation made for the key
	// during the capture, freed or not (from Snapshot.Totals, or from the
	// records when the key has no Total).
	AllocObjects uint64
	AllocSpace   uint64
	// InuseObjects and InuseSpace count the outstanding allocations old
	// enough to pass Options.MinAge; space is the allocator's size.
	InuseObjects uint64
	InuseSpace   uint64
	// ReqSpace is the bytes requested by the callers of the in-use
	// allocations; InuseSpace - ReqSpace is lost to internal fragmentation.
	ReqSpace uint64
	// Accounted is true when any outstanding allocation of the group (young
	// or not) was charged to a memory cgroup.
	Accounted bool
	// CgroupPath is the label value for Key.CgroupID ("" when the id is 0).
	CgroupPath string
	// MemcgPath is the label value for Key.MemcgID: its path in the memory
	// controller's hierarchy (Snapshot.Memcgs), "id:N" when the path is not
	// known, "" when the id is 0.
	MemcgPath string
	// MemcgRemoved is true when that memory cgroup was removed while these
	// objects, charged to it, live on (Memcg.Removed).
	MemcgRemoved bool
	// GrowthObjects and GrowthSpace are the stack's growth figure (see
	// GrowthFigure), shared among its samples by in-use objects; zero
	// without Options.Growth. They are the raw figure, reclaimable or not:
	// the summary shows them; the profile's growth_* values are LeakGrowth.
	GrowthObjects uint64
	GrowthSpace   uint64
	// Steadiness is the stack's GrowthFigure.Steadiness.
	Steadiness float64
	// Reclaimable is true for slab caches whose objects the kernel reclaims
	// under memory pressure (Options.Reclaimable, kmalloc-rcl-*).
	Reclaimable bool
	// ReclaimableOwner, for a slab sample of a cache that is not
	// reclaimable, names the reclaimable cache whose objects its objects
	// are freed with ("" when none): an inode's LSM blob, a dentry's
	// external name. Both were allocated under the same call of the
	// owner's constructor: the sample's stack has a frame in the function
	// of a reclaimable sample's call site, or of that call site's caller,
	// and the frames above it are those above that one, address for
	// address. A call-site-only stack (Snapshot.Partial) is owned when its
	// call site is in the function of a reclaimable sample's call site.
	ReclaimableOwner string
	// FreesUntraced is true for slab caches some of whose frees were not
	// seen (Snapshot.UntracedFrees): part of their in-use count may be
	// objects freed through a path without a hook.
	FreesUntraced bool
}

// Reclaimed reports whether the kernel gives the sample's objects back
// under memory pressure: they are of a reclaimable cache, or freed with
// objects of one (ReclaimableOwner). Their growth is seldom a leak.
func (s *AggSample) Reclaimed() bool {
	return s.Reclaimable || s.ReclaimableOwner != ""
}

// LeakGrowth is the growth the profile's growth_objects and growth_space
// count: GrowthObjects and GrowthSpace, or zero when the sample is
// Reclaimed, so that the top of those sample types is growth the kernel
// will not give back.
func (s *AggSample) LeakGrowth() (objects, space uint64) {
	if s.Reclaimed() {
		return 0, 0
	}
	return s.GrowthObjects, s.GrowthSpace
}

// Aggregation is a Snapshot grouped by Key and symbolized, ready to become a
// pprof profile or a terminal summary.
type Aggregation struct {
	// gfpName and migrateName are Options.GFPName and Options.MigrateName.
	gfpName     func(uint32) string
	migrateName func(uint8) string
	container   func(string) (string, string)
	// HasGrowth is true when Options.Growth was given.
	HasGrowth bool
	// SampleEvery is the sampling rate the values were scaled by (1: every
	// allocation was recorded).
	SampleEvery uint64
	// Meta is the snapshot's Meta, with MinAge raised to Options.MinAge when
	// that is larger.
	Meta Meta
	// Platform is the snapshot's Platform.
	Platform Platform
	// Samples holds one entry per Key with a non-zero value, sorted by
	// InuseSpace, then AllocSpace, descending (ties in Key order).
	Samples []AggSample

	// Sums of the sample values over all samples.
	AllocObjects uint64
	AllocSpace   uint64
	InuseObjects uint64
	InuseSpace   uint64
	ReqSpace     uint64

	// YoungSkipped and YoungSkippedSpace count the records (and their bytes)
	// left out of the in-use values because they were younger than MinAge.
	YoungSkipped      uint64
	YoungSkippedSpace uint64
	// MissingStacks counts the distinct stack ids (>= 0) referenced by
	// records or totals but absent, or empty, in Snapshot.Stacks. Their
	// allocations are shown under the StackLostNotFound placeholder.
	MissingStacks uint64
	// UntracedFrees is Snapshot.UntracedFrees.
	// MergedCaches: see Snapshot.MergedCaches.
	MergedCaches  map[string][]string
	UntracedFrees map[string]uint64
	// SelfCheck is Snapshot.SelfCheck.
	SelfCheck *SelfCheck
	// UnresolvedFrames counts the distinct addresses in the referenced
	// stacks that the Symbolizer could not name (Frame.Function == "").
	UnresolvedFrames uint64

	// Counters is Meta.Counters followed by the counters Aggregate adds
	// itself (young_skipped, stack_missing, frames_unresolved), so that the
	// profile comments and the summary show every loss from one list.
	Counters []Counter
}

// Names of the counters Aggregate appends to Aggregation.Counters.
const (
	CounterYoungSkipped     = "young_skipped"
	CounterStackMissing     = "stack_missing"
	CounterFramesUnresolved = "frames_unresolved"
)

// groupKey is a Key with its strings replaced by interned ids. It has no
// pointers and no padding, so it hashes and compares as 32 plain bytes; a Key
// with its strings costs several times more per lookup, which at a million
// records is most of the aggregation time.
type groupKey struct {
	stack    StackID
	cgroup   uint64
	memcg    uint64
	detail   uint64 // page allocations: gfp | order << 32 | migrate << 40
	pid      uint32
	cache    uint32
	comm     uint32
	poolKind uint32 // pool id << 8 | Kind
}

func keyDetail(k *Key) uint64 {
	return uint64(k.GFP) | uint64(k.Order)<<32 | uint64(k.Migrate)<<40
}

// interner numbers distinct strings; "" is always 0.
type interner map[string]uint32

func (in interner) id(s string) uint32 {
	if s == "" {
		return 0
	}
	id, ok := in[s]
	if !ok {
		id = uint32(len(in) + 1)
		in[s] = id
	}
	return id
}

// ranks returns, indexed by id, each string's position in sorted order
// (with "" first, at id 0).
func (in interner) ranks() []uint32 {
	strs := make([]string, 0, len(in))
	for s := range in {
		strs = append(strs, s)
	}
	slices.Sort(strs)
	r := make([]uint32, len(in)+1)
	for i, s := range strs {
		r[in[s]] = uint32(i + 1)
	}
	return r
}

// group accumulates the values of one Key while scanning a snapshot. It is
// kept small and holds its own key, which the hash table compares, because
// each record looks up and updates a random group: at hundreds of thousands
// of groups those memory accesses, not the arithmetic, are the cost.
type group struct {
	gk           groupKey
	recObjects   uint64 // every record, young or not: alloc values when there is no Total
	recSpace     uint64
	inuseObjects uint64
	inuseSpace   uint64
	reqSpace     uint64
	allocObjects uint64 // from Totals until finish
	allocSpace   uint64
	hasTotal     bool
	accounted    bool
	dead         bool // merged into another group
}

// finish settles the alloc values: from the Totals if any, else from the
// records, which were all allocated during the capture.
func (g *group) finish() {
	if !g.hasTotal {
		g.allocObjects, g.allocSpace = g.recObjects, g.recSpace
	}
}

func (g *group) empty() bool {
	return g.allocObjects == 0 && g.allocSpace == 0 && g.inuseObjects == 0 && g.inuseSpace == 0
}

// merge adds the finished values of h to g.
func (g *group) merge(h *group) {
	g.recObjects += h.recObjects
	g.recSpace += h.recSpace
	g.inuseObjects += h.inuseObjects
	g.inuseSpace += h.inuseSpace
	g.reqSpace += h.reqSpace
	g.allocObjects += h.allocObjects
	g.allocSpace += h.allocSpace
	g.accounted = g.accounted || h.accounted
}

// grouper assigns records and totals to groups.
type grouper struct {
	table groupTable
	// groups and srcs are indexed alike. srcs[i] is the first record
	// (>= 0) or total (-src-1) of groups[i], whose Key, apart from the
	// stack id in groups[i].gk, is the group's: keeping it rather than a
	// copy of the Key keeps groups small.
	groups []group
	srcs   []int32
	strs   [3]interner // cache, comm, pool
	sink   uint32      // keeps the compiler from dropping lookupBatch's prefetching loads
}

// batchSize is how many records lookupBatch handles at once: enough
// independent memory accesses in flight to hide their latency, few enough to
// stay in cache.
const batchSize = 64

// lookupBatch sets idx[j] to the group of the j'th of n (<= batchSize)
// records or totals, whose Key is key(j) and whose source (see srcs) is
// src(j), creating groups as needed. It works in passes over the batch so
// that the cache misses of different items overlap instead of following one
// another, which halves the time to group a million records.
func (gr *grouper) lookupBatch(n int, key func(j int) *Key, src func(j int) int32, idx []int32) {
	var gks [batchSize]groupKey
	var hs [batchSize]uint64
	var sink uint32
	for j := range n {
		k := key(j)
		gks[j] = groupKey{
			stack:    k.Stack,
			cgroup:   k.CgroupID,
			memcg:    k.MemcgID,
			detail:   keyDetail(k),
			pid:      k.PID,
			cache:    gr.strs[0].id(k.Cache),
			comm:     gr.strs[1].id(k.Comm),
			poolKind: gr.strs[2].id(k.Pool)<<8 | uint32(k.Kind),
		}
		hs[j] = gr.table.hashOf(&gks[j])
	}
	// Touch each record's slot, then each candidate group, before using
	// them: the loads are independent, so they proceed in parallel.
	mask := uint64(len(gr.table.slots) - 1)
	for j := range n {
		sink += gr.table.slots[hs[j]&mask].idx
	}
	for j := range n {
		if s := gr.table.slots[hs[j]&mask]; s.idx != 0 {
			sink += gr.groups[s.idx-1].gk.pid
		}
	}
	gr.sink += sink
	for j := range n {
		gi, ok := gr.table.findHashed(&gks[j], hs[j], gr.groups)
		if !ok {
			gi = int32(len(gr.groups))
			gr.groups = append(gr.groups, group{gk: gks[j]})
			gr.srcs = append(gr.srcs, src(j))
			gr.table.insert(&gks[j], gi, gr.groups)
		}
		idx[j] = gi
	}
}

// Aggregate groups the records and totals of snap by Key, symbolizes each
// distinct stack with sym, and returns the result. sym may be nil, in which
// case every frame is unresolved (and named by its address in the profile).
// It returns an error when snap is nil or too large to index, or when
// opt.MinAge is positive but snap.Taken is not set; it never drops an allocation because its stack was
// lost, but files it under a placeholder frame instead.
func Aggregate(snap *Snapshot, sym Symbolizer, opt Options) (*Aggregation, error) {
	if snap == nil {
		return nil, errors.New("aggregating snapshot: nil snapshot")
	}
	if len(snap.Records) > math.MaxInt32 || len(snap.Totals) > math.MaxInt32 {
		return nil, errors.New("aggregating snapshot: more than 2^31 records or totals")
	}
	if opt.MinAge > 0 && snap.Taken.IsZero() {
		return nil, errors.New("aggregating snapshot: a minimum age needs the snapshot time (Snapshot.Taken)")
	}
	trim := opt.TrimLeading
	if trim == nil {
		trim = snap.Platform.TrimLeading
	}

	a := &Aggregation{Meta: snap.Meta, Platform: snap.Platform}
	a.Meta.MinAge = max(a.Meta.MinAge, opt.MinAge)

	// Nearly every outstanding key also has a Total (it was allocated during
	// the capture), so the number of totals is a good size hint; without
	// totals assume several records per key rather than reserving a group
	// per record, which would cost more than the growth it avoids.
	hint := len(snap.Totals)
	if hint == 0 {
		hint = len(snap.Records)/8 + 1
	}
	gr := &grouper{
		table:  newGroupTable(hint),
		groups: make([]group, 0, hint),
		srcs:   make([]int32, 0, hint),
		strs:   [3]interner{make(interner), make(interner), make(interner)},
	}

	minAge := opt.MinAge > 0
	cutoff := snap.Taken.Add(-opt.MinAge).UnixNano()
	var batch [batchSize]int32
	for start := 0; start < len(snap.Records); start += batchSize {
		recs := snap.Records[start:min(start+batchSize, len(snap.Records))]
		gr.lookupBatch(len(recs),
			func(j int) *Key { return &recs[j].Key },
			func(j int) int32 { return int32(start + j) },
			batch[:len(recs)])
		for j := range recs {
			r := &recs[j]
			g := &gr.groups[batch[j]]
			g.recObjects++
			g.recSpace += r.BytesAlloc
			g.accounted = g.accounted || r.Accounted
			if minAge && r.Time > cutoff {
				a.YoungSkipped++
				a.YoungSkippedSpace += r.BytesAlloc
				continue
			}
			g.inuseObjects++
			g.inuseSpace += r.BytesAlloc
			g.reqSpace += r.BytesReq
		}
	}
	for start := 0; start < len(snap.Totals); start += batchSize {
		tots := snap.Totals[start:min(start+batchSize, len(snap.Totals))]
		gr.lookupBatch(len(tots),
			func(j int) *Key { return &tots[j].Key },
			func(j int) int32 { return -int32(start+j) - 1 },
			batch[:len(tots)])
		for j := range tots {
			g := &gr.groups[batch[j]]
			g.hasTotal = true
			g.allocObjects += tots[j].Count
			g.allocSpace += tots[j].Bytes
		}
	}
	groups := gr.groups
	for i := range groups {
		groups[i].finish()
	}

	// Checking the stack per group rather than per record saves a map
	// lookup per record; groups whose stacks went missing are then merged
	// into the StackLostNotFound group with the same labels.
	missing := make(map[StackID]struct{})
	for i := range groups {
		g := &groups[i]
		if g.gk.stack < 0 {
			continue
		}
		if st, ok := snap.Stacks[g.gk.stack]; ok && len(st) > 0 {
			continue
		}
		missing[g.gk.stack] = struct{}{}
		gk := g.gk
		gk.stack = StackLostNotFound
		if j, ok := gr.table.find(&gk, groups); ok {
			groups[j].merge(g)
			g.dead = true
			continue
		}
		// The entry for the old key stays behind, pointing at a group
		// that no longer matches it; nothing looks that key up again.
		g.gk = gk
		gr.table.insert(&gk, int32(i), groups)
	}
	a.MissingStacks = uint64(len(missing))

	// Sort small records of plain integers rather than the groups or
	// samples themselves, which are large to move and slow to compare: the
	// strings are replaced by their rank, which orders them the same way.
	ranks := [3][]uint32{gr.strs[0].ranks(), gr.strs[1].ranks(), gr.strs[2].ranks()}
	orders := make([]order, 0, len(groups))
	for i := range groups {
		g := &groups[i]
		gk := &g.gk
		if g.dead || g.empty() {
			continue
		}
		orders = append(orders, order{
			inuseSpace:   g.inuseSpace,
			allocSpace:   g.allocSpace,
			inuseObjects: g.inuseObjects,
			stack:        gk.stack,
			cgroup:       gk.cgroup,
			memcg:        gk.memcg,
			detail:       gk.detail,
			pid:          gk.pid,
			cache:        ranks[0][gk.cache],
			comm:         ranks[1][gk.comm],
			pool:         ranks[2][gk.poolKind>>8],
			kind:         Kind(gk.poolKind),
			i:            int32(i),
		})
	}
	slices.SortFunc(orders, compareOrders)

	res := newResolver(snap.Stacks, snap.Partial, sym, trim)
	res.drop = snap.Platform.DropFrames
	res.leafFn = snap.Leaf
	res.frameSyms = snap.FrameSymbols
	// A sampled capture recorded one allocation in SampleEvery, uniformly:
	// scaling by the rate makes every value an unbiased estimate.
	scale := max(snap.SampleEvery, 1)
	a.SampleEvery = scale
	cgroups := make(map[uint64]string)
	a.Samples = make([]AggSample, len(orders))
	for n, o := range orders {
		g, src := &groups[o.i], gr.srcs[o.i]
		s := &a.Samples[n]
		var key Key
		if src >= 0 {
			key = snap.Records[src].Key
		} else {
			key = snap.Totals[-src-1].Key
		}
		key.Stack = g.gk.stack
		*s = AggSample{
			Key:          key,
			Frames:       res.stack(key.Stack),
			AllocObjects: g.allocObjects * scale,
			AllocSpace:   g.allocSpace * scale,
			InuseObjects: g.inuseObjects * scale,
			InuseSpace:   g.inuseSpace * scale,
			ReqSpace:     g.reqSpace * scale,
			Accounted:    g.accounted,
		}
		if id := key.CgroupID; id != 0 {
			p, ok := cgroups[id]
			if !ok {
				if opt.CgroupPath != nil {
					p = opt.CgroupPath(id)
				}
				if p == "" {
					p = strconv.FormatUint(id, 10)
				}
				cgroups[id] = p
			}
			s.CgroupPath = p
		}
		if id := key.MemcgID; id != 0 {
			m := snap.Memcgs[id]
			s.MemcgPath, s.MemcgRemoved = m.Path, m.Removed
			if m.Path == "" {
				s.MemcgPath = "id:" + strconv.FormatUint(id, 10)
			}
		}
		a.AllocObjects += s.AllocObjects
		a.AllocSpace += s.AllocSpace
		a.InuseObjects += s.InuseObjects
		a.InuseSpace += s.InuseSpace
		a.ReqSpace += s.ReqSpace
	}
	a.UnresolvedFrames = res.unresolved
	for i := range a.Samples {
		c := a.Samples[i].Cache
		a.Samples[i].Reclaimable = c != "" && (IsReclaimableCache(c, opt.Reclaimable) || snap.Reclaimable[c])
		a.Samples[i].FreesUntraced = c != "" && snap.UntracedFrees[c] > 0
	}
	markOwners(a.Samples, snap.Partial, snap.Platform.isAllocator, snap.Platform.isConstructor)
	a.UntracedFrees = snap.UntracedFrees
	a.MergedCaches = snap.MergedCaches
	a.SelfCheck = snap.SelfCheck
	a.gfpName, a.migrateName, a.container = opt.GFPName, opt.MigrateName, opt.Container
	if a.migrateName == nil {
		a.migrateName = snap.Platform.MigrateName
	}
	if opt.Growth != nil {
		a.HasGrowth = true
		applyGrowth(a.Samples, opt.Growth)
	}

	a.Counters = make([]Counter, 0, len(snap.Meta.Counters)+3)
	a.Counters = append(a.Counters, snap.Meta.Counters...)
	a.Counters = append(a.Counters,
		Counter{
			Name:  CounterYoungSkipped,
			Value: a.YoungSkipped,
			Help:  "outstanding allocations younger than the minimum age, left out of in-use values",
		},
		Counter{
			Name:  CounterStackMissing,
			Value: a.MissingStacks,
			Help:  "stack ids not found in the stack map; shown as " + StackLostName(StackLostNotFound),
			Loss:  true,
		},
		Counter{
			Name:  CounterFramesUnresolved,
			Value: a.UnresolvedFrames,
			Help:  "kernel addresses without a symbol; shown as [unknown 0x...]",
			Loss:  true,
		},
	)
	return a, nil
}

// order is a group's sort key: its values, then its Key with the strings
// replaced by their rank.
type order struct {
	inuseSpace, allocSpace, inuseObjects uint64
	stack                                StackID
	cgroup, memcg, detail                uint64
	pid, cache, comm, pool               uint32
	kind                                 Kind
	i                                    int32
}

// compareOrders orders samples by decreasing in-use space, allocated space
// and in-use objects, then by Key field by field (kind, stack, cache, comm,
// pid, cgroup, memcg, pool) so that the output does not depend on record order.
func compareOrders(x, y order) int {
	if c := cmp.Compare(y.inuseSpace, x.inuseSpace); c != 0 {
		return c
	}
	if c := cmp.Compare(y.allocSpace, x.allocSpace); c != 0 {
		return c
	}
	if c := cmp.Compare(y.inuseObjects, x.inuseObjects); c != 0 {
		return c
	}
	return cmp.Or(
		cmp.Compare(x.kind, y.kind),
		cmp.Compare(x.stack, y.stack),
		cmp.Compare(x.cache, y.cache),
		cmp.Compare(x.comm, y.comm),
		cmp.Compare(x.pid, y.pid),
		cmp.Compare(x.cgroup, y.cgroup),
		cmp.Compare(x.memcg, y.memcg),
		cmp.Compare(x.pool, y.pool),
		cmp.Compare(x.detail, y.detail),
	)
}

// resolver symbolizes and trims stacks, each distinct stack and each
// distinct address once.
type resolver struct {
	stacks  map[StackID][]uint64
	partial map[StackID]bool
	sym     Symbolizer
	trim    []string
	drop    []string
	// The leaf is resolved as is and the other frames as return addresses,
	// so the same address may resolve differently in the two roles.
	leaf, ret  map[uint64]Frame
	done       map[StackID][]Frame
	unresolved uint64
	// leafFn is Snapshot.Leaf.
	leafFn map[StackID]uint64
	// frameSyms is Snapshot.FrameSymbols.
	frameSyms map[StackID][]Symbol
}

func newResolver(stacks map[StackID][]uint64, partial map[StackID]bool, sym Symbolizer, trim []string) *resolver {
	return &resolver{
		stacks:  stacks,
		partial: partial,
		sym:     sym,
		trim:    trim,
		leaf:    make(map[uint64]Frame),
		ret:     make(map[uint64]Frame),
		done:    make(map[StackID][]Frame),
	}
}

func (r *resolver) stack(id StackID) []Frame {
	if fs, ok := r.done[id]; ok {
		return fs
	}
	var fs []Frame
	if id < 0 {
		fs = []Frame{{Function: StackLostName(id)}}
	} else if r.partial[id] {
		addrs := r.stacks[id]
		fs = make([]Frame, 0, len(addrs)+1)
		for _, addr := range addrs {
			fs = append(fs, r.frame(addr, false))
		}
		fs = dropFrames(fs, r.drop)
		fs = append(fs, Frame{Function: NotWalkedName})
	} else {
		addrs := r.stacks[id]
		syms := r.frameSyms[id]
		fs = make([]Frame, len(addrs))
		for i, addr := range addrs {
			if i < len(syms) && (syms[i].Name != "" || syms[i].Module != "") {
				fs[i] = frameOf(addr, syms[i])
				continue
			}
			fs[i] = r.frame(addr, i == 0)
		}
		fs = dropFrames(trimLeading(fs, r.trim), r.drop)
	}
	if fn := r.leafFn[id]; fn != 0 {
		if lf := r.frame(fn, true); len(fs) == 0 || fs[0].Function != lf.Function {
			fs = append([]Frame{lf}, fs...)
		}
	}
	r.done[id] = fs
	return fs
}

// frameOf is the frame of addr in a known symbol.
func frameOf(addr uint64, s Symbol) Frame {
	f := Frame{Addr: addr, Offset: addr - s.Start, Function: s.Name, Module: s.Module}
	if f.Function == "" && f.Module != "" {
		f.Function = fmt.Sprintf("%s+%#x", f.Module, f.Offset)
	}
	return f
}

func (r *resolver) frame(addr uint64, leaf bool) Frame {
	cache := r.ret
	if leaf {
		cache = r.leaf
	}
	if f, ok := cache[addr]; ok {
		return f
	}
	f := Frame{Addr: addr}
	if r.sym != nil {
		pc := addr
		if !leaf && pc > 0 {
			pc-- // a return address: the call is the instruction before it
		}
		if s, ok := r.sym.Lookup(pc); ok {
			f.Offset = addr - s.Start
			f.Function, f.Module = s.Name, s.Module
			if f.Function == "" && f.Module != "" {
				f.Function = fmt.Sprintf("%s+%#x", f.Module, f.Offset)
			}
		}
	}
	if f.Function == "" {
		if _, seen := r.otherRole(leaf)[addr]; !seen {
			r.unresolved++
		}
	}
	cache[addr] = f
	return f
}

func (r *resolver) otherRole(leaf bool) map[uint64]Frame {
	if leaf {
		return r.ret
	}
	return r.leaf
}

// trimLeading drops the run of frames at the leaf end whose function name
// starts with one of prefixes. It keeps the stack whole when every frame
// matches, since an all-plumbing stack still says more than nothing.
func trimLeading(fs []Frame, prefixes []string) []Frame {
	n := 0
	for n < len(fs) && hasAnyPrefix(fs[n].Function, prefixes) {
		n++
	}
	if n == len(fs) {
		return fs
	}
	return fs[n:]
}

// dropFrames drops the frames whose function name starts with one of
// prefixes, wherever they are, unless that would leave nothing.
func dropFrames(fs []Frame, prefixes []string) []Frame {
	if len(prefixes) == 0 {
		return fs
	}
	var out []Frame
	for i, f := range fs {
		if !hasAnyPrefix(f.Function, prefixes) {
			if out != nil {
				out = append(out, f)
			}
			continue
		}
		if out == nil {
			out = append(make([]Frame, 0, len(fs)-1), fs[:i]...)
		}
	}
	if out == nil {
		return fs
	}
	if len(out) == 0 {
		return fs
	}
	return out
}

func hasAnyPrefix(name string, prefixes []string) bool {
	if name == "" {
		return false
	}
	for _, p := range prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}
