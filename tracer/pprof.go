package tracer

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/pprof/profile"
)

// DefaultSampleType is the sample type pprof shows unless told otherwise:
// outstanding bytes, the measure of a leak.
const DefaultSampleType = "inuse_space"

// Label keys set on profile samples.
const (
	LabelKind      = "kind"
	LabelCache     = "cache"
	LabelComm      = "comm"
	LabelPID       = "pid"
	LabelCgroup    = "cgroup"
	LabelPool      = "pool"
	LabelTag       = "tag"               // Windows pool tag (pool samples carry it instead of cache)
	LabelDriver    = "driver"            // Windows: the first driver in the stack past the kernel image
	LabelReclaim   = "reclaimable"       // "true" for slab caches the kernel reclaims under pressure
	LabelOwner     = "reclaimable_owner" // the reclaimable cache a slab sample's objects are freed with (AggSample.ReclaimableOwner)
	LabelUntraced  = "frees_untraced"    // "true" for slab caches some of whose frees were not seen
	LabelMerged    = "merged_with"       // slab caches merged into this one, comma-separated
	LabelOrder     = "order"             // page allocations: 2^order pages
	LabelGFP       = "gfp"               // page allocations: GFP flags
	LabelMigrate   = "migratetype"       // page allocations: migrate type
	LabelAccounted = "accounted"
	// LabelAllocator is the allocator function the sample's code called
	// (kmem_cache_alloc_noprof, __kmalloc_noprof, alloc_pages_mpol_noprof,
	// ExAllocatePool2): the profile leaves the allocator's frames out of
	// the stack, so that its leaf is the code that allocated.
	LabelAllocator = "allocator"
	LabelContainer = "container" // the container of the cgroup path (Options.Container), e.g. "docker:3f4e5a6b7c8d..."
	LabelPod       = "pod"       // the Kubernetes pod uid of the cgroup path (Options.Container)
	// LabelMemcg is the memory cgroup charged, by its path in the memory
	// controller's hierarchy (v1 or v2); "id:N" when it was removed before
	// it could be named.
	LabelMemcg = "memcg"
	// LabelMemcgRemoved is "true" on samples whose memory cgroup was
	// removed while they live on: `-tagfocus memcg_removed=true`.
	LabelMemcgRemoved = "memcg_removed"
	LabelBytes        = "bytes" // numeric: average allocation size in the sample
	// LabelRequested (numeric, bytes) is what the callers of the sample's
	// in-use allocations asked for (the summary's REQ%); absent when unknown.
	LabelRequested = "requested"
	// LabelSteadiness (numeric, parts per million) is the growth figure's
	// steadiness (GrowthFigure.Steadiness), on profiles with growth.
	LabelSteadiness = "steadiness"
	// LabelGrowthObjects and LabelGrowthSpace (numeric) are the growth of a
	// sample whose growth values are zero because it is reclaimable
	// (AggSample.LeakGrowth): the summary shows it all the same.
	LabelGrowthObjects = "reclaimable_growth_objects"
	LabelGrowthSpace   = "reclaimable_growth_space"
)

// Profile builds a heap-shaped pprof profile from the aggregation: the sample
// types alloc_objects, alloc_space, inuse_objects and inuse_space (default),
// leaf-first kernel stacks under one [kernel.kallsyms] mapping, one sample per
// Key with its labels, and the capture facts and counters as comments. Lost
// stacks appear as a single frame without a mapping that names the cause.
//
// Samples with the same labels share their Label, NumLabel and NumUnit maps,
// and samples with the same stack their Location slice, which keeps profiles
// of hundreds of thousands of samples affordable. Whole-profile edits such as
// SetLabel or RemoveLabel work as usual; copy a sample's maps before editing
// that sample alone.
//
// It returns an error only if the result fails profile.CheckValid, which
// would be a bug here.
func (a *Aggregation) Profile() (*profile.Profile, error) {
	p := &profile.Profile{
		SampleType: []*profile.ValueType{
			{Type: "alloc_objects", Unit: "count"},
			{Type: "alloc_space", Unit: "bytes"},
			{Type: "inuse_objects", Unit: "count"},
			{Type: "inuse_space", Unit: "bytes"},
		},
		DefaultSampleType: DefaultSampleType,
		// Every allocation is recorded, so one sample unit is one byte.
		PeriodType:    &profile.ValueType{Type: "space", Unit: "bytes"},
		Period:        1,
		DurationNanos: int64(a.Meta.Duration),
		Comments:      a.comments(),
	}
	if !a.Meta.Start.IsZero() {
		p.TimeNanos = a.Meta.Start.UnixNano()
	}
	if a.SampleEvery > 1 {
		// One allocation in SampleEvery was recorded (values are scaled by
		// it), as runtime/pprof states its sampling rate in Period.
		p.PeriodType = &profile.ValueType{Type: "allocations", Unit: "count"}
		p.Period = int64(a.SampleEvery)
	}
	nv := 4
	if a.HasGrowth {
		// Growth over the capture (record --interval): see GrowthFigure.
		// Only unreclaimable growth counts (AggSample.LeakGrowth): the
		// summary shows the rest.
		p.SampleType = append(p.SampleType,
			&profile.ValueType{Type: "growth_objects", Unit: "count"},
			&profile.ValueType{Type: "growth_space", Unit: "bytes"})
		nv = 6
	}

	b := newProfileBuilder(p, a.Samples, &a.Platform)
	b.gfpName, b.migrateName, b.container = a.gfpName, a.migrateName, a.container
	b.merged = a.MergedCaches
	p.Sample = make([]*profile.Sample, len(a.Samples))
	// One allocation for all samples and one for all values: at a million
	// records there can be hundreds of thousands of samples.
	samples := make([]profile.Sample, len(a.Samples))
	values := make([]int64, nv*len(a.Samples))
	for i := range a.Samples {
		s := &a.Samples[i]
		ps := &samples[i]
		ps.Value = values[nv*i : nv*i+nv : nv*i+nv]
		ps.Value[0] = clampInt64(s.AllocObjects)
		ps.Value[1] = clampInt64(s.AllocSpace)
		ps.Value[2] = clampInt64(s.InuseObjects)
		ps.Value[3] = clampInt64(s.InuseSpace)
		if a.HasGrowth {
			objects, space := s.LeakGrowth()
			ps.Value[4] = clampInt64(objects)
			ps.Value[5] = clampInt64(space)
		}
		ps.Location = b.locations(s)
		ps.Label = b.labels(s)
		nk := numKey{req: -1, steady: -1, growthObjects: -1, growthSpace: -1}
		nk.avg, nk.hasAvg = averageBytes(s)
		if s.ReqSpace > 0 && s.InuseObjects > 0 {
			nk.req = clampInt64(s.ReqSpace)
		}
		if a.HasGrowth {
			nk.steady = int64(math.Round(s.Steadiness * 1e6))
			if objects, space := s.LeakGrowth(); objects != s.GrowthObjects || space != s.GrowthSpace {
				nk.growthObjects, nk.growthSpace = clampInt64(s.GrowthObjects), clampInt64(s.GrowthSpace)
			}
		}
		ps.NumLabel, ps.NumUnit = b.numLabel(nk)
		p.Sample[i] = ps
	}

	if err := p.CheckValid(); err != nil {
		return nil, fmt.Errorf("building profile: %w", err)
	}
	return p, nil
}

// averageBytes returns the mean object size of the sample: of the in-use
// objects, or of all allocations when none is in use.
func averageBytes(s *AggSample) (int64, bool) {
	switch {
	case s.InuseObjects > 0:
		return clampInt64(s.InuseSpace / s.InuseObjects), true
	case s.AllocObjects > 0:
		return clampInt64(s.AllocSpace / s.AllocObjects), true
	}
	return 0, false
}

func clampInt64(v uint64) int64 {
	if v > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(v)
}

type funcKey struct {
	name, file string
}

type locKey struct {
	addr uint64
	fn   *profile.Function
}

// profileBuilder interns functions, locations and label values so that each
// appears once in the profile however many samples refer to it.
type profileBuilder struct {
	p           *profile.Profile
	platform    *Platform
	gfpName     func(uint32) string
	migrateName func(uint8) string
	container   func(string) (string, string)
	merged      map[string][]string // slab cache aliases (a function of the cache label)
	kernel      *profile.Mapping
	funcs       map[funcKey]*profile.Function
	locs        map[locKey]*profile.Location
	stacks      map[StackID][]*profile.Location
	labelSets   map[labelSet]map[string][]string
	numLabels   map[numKey]numLabels
}

func newProfileBuilder(p *profile.Profile, samples []AggSample, platform *Platform) *profileBuilder {
	b := &profileBuilder{
		p:         p,
		platform:  platform,
		funcs:     make(map[funcKey]*profile.Function),
		locs:      make(map[locKey]*profile.Location),
		stacks:    make(map[StackID][]*profile.Location),
		labelSets: make(map[labelSet]map[string][]string),
		numLabels: make(map[numKey]numLabels),
	}
	// The mapping must span every kernel address, so find the range first.
	lo, hi := uint64(math.MaxUint64), uint64(0)
	for i := range samples {
		if samples[i].Stack < 0 {
			continue
		}
		for _, f := range samples[i].Frames {
			lo, hi = min(lo, f.Addr), max(hi, f.Addr)
		}
	}
	if lo <= hi {
		limit := hi + 1
		if hi == math.MaxUint64 {
			limit = hi
		}
		b.kernel = &profile.Mapping{
			ID:           1,
			Start:        lo,
			Limit:        limit,
			File:         platform.kernelMapping(),
			HasFunctions: true,
		}
		p.Mapping = []*profile.Mapping{b.kernel}
	}
	return b
}

// locations returns the sample's stack as profile locations; samples with the
// same stack share the slice.
func (b *profileBuilder) locations(s *AggSample) []*profile.Location {
	if ls, ok := b.stacks[s.Stack]; ok {
		return ls
	}
	frames := s.Frames[b.platform.allocatorRun(s):]
	ls := make([]*profile.Location, len(frames))
	for i, f := range frames {
		if s.Stack < 0 {
			// A placeholder has no address to map; pprof accepts a
			// mapping-less location that carries its function.
			ls[i] = b.location(0, nil, b.function(f.Function, ""))
			continue
		}
		ls[i] = b.location(f.Addr, b.kernel, b.function(frameName(f), b.frameFile(f)))
	}
	b.stacks[s.Stack] = ls
	return ls
}

func (b *profileBuilder) location(addr uint64, m *profile.Mapping, fn *profile.Function) *profile.Location {
	k := locKey{addr, fn}
	if l, ok := b.locs[k]; ok {
		return l
	}
	l := &profile.Location{
		ID:      uint64(len(b.p.Location) + 1),
		Mapping: m,
		Address: addr,
		Line:    []profile.Line{{Function: fn}},
	}
	b.locs[k] = l
	b.p.Location = append(b.p.Location, l)
	return l
}

func (b *profileBuilder) function(name, file string) *profile.Function {
	k := funcKey{name, file}
	if f, ok := b.funcs[k]; ok {
		return f
	}
	f := &profile.Function{
		ID:         uint64(len(b.p.Function) + 1),
		Name:       name,
		SystemName: name,
		Filename:   file,
	}
	b.funcs[k] = f
	b.p.Function = append(b.p.Function, f)
	return f
}

// frameName is the function name shown for a frame; an unresolved address is
// named after itself so that every location has a function.
func frameName(f Frame) string {
	if f.Function != "" {
		return f.Function
	}
	return fmt.Sprintf("[unknown %#x]", f.Addr)
}

// frameFile is the Function.Filename for a frame: the module in brackets, as
// /proc/kallsyms writes it ("[bpf]" for BPF programs), the platform's
// KernelFile for the kernel image itself, and "" when not even the module
// is known.
func (b *profileBuilder) frameFile(f Frame) string {
	mod := strings.TrimSuffix(strings.TrimPrefix(f.Module, "["), "]")
	switch {
	case mod != "":
		return "[" + mod + "]"
	case f.Function != "":
		return b.platform.KernelFile
	}
	return ""
}

// labelSet is everything a sample's string labels depend on.
type labelSet struct {
	kind      Kind
	accounted bool
	pid       uint32
	cgroupID  uint64
	cache     string
	comm      string
	cgroup    string
	memcg     string
	memcgGone bool
	pool      string
	driver    string
	reclaim   bool
	owner     string
	untraced  bool
	detail    uint64
	allocator string
}

// labels returns the string labels of a sample, shared with every sample
// that has the same ones.
func (b *profileBuilder) labels(s *AggSample) map[string][]string {
	var driver string
	if b.platform.Origin != nil {
		driver = b.platform.Origin(s.Frames)
	}
	var allocator string
	if n := b.platform.allocatorRun(s); n > 0 {
		allocator = frameName(s.Frames[n-1])
	}
	ls := labelSet{s.Kind, s.Accounted, s.PID, s.CgroupID, s.Cache, s.Comm, s.CgroupPath, s.MemcgPath, s.MemcgRemoved, s.Pool, driver, s.Reclaimable, s.ReclaimableOwner, s.FreesUntraced, keyDetail(&s.Key), allocator}
	if l, ok := b.labelSets[ls]; ok {
		return l
	}
	l := make(map[string][]string, 9)
	l[LabelKind] = []string{s.Kind.String()}
	switch {
	case s.Cache != "" && s.Kind == KindPool:
		l[LabelTag] = []string{s.Cache}
	case s.Cache != "":
		l[LabelCache] = []string{s.Cache}
		if m := b.merged[s.Cache]; len(m) > 0 && s.Kind == KindSlab {
			l[LabelMerged] = []string{strings.Join(m, ",")}
		}
	}
	if driver != "" {
		l[LabelDriver] = []string{driver}
	}
	if s.Reclaimable {
		l[LabelReclaim] = []string{"true"}
	}
	if s.ReclaimableOwner != "" {
		l[LabelOwner] = []string{s.ReclaimableOwner}
	}
	if s.FreesUntraced {
		l[LabelUntraced] = []string{"true"}
	}
	if s.Kind == KindPage {
		l[LabelOrder] = []string{strconv.Itoa(int(s.Order))}
		if s.GFP != 0 {
			name := "0x" + strconv.FormatUint(uint64(s.GFP), 16)
			if b.gfpName != nil {
				name = b.gfpName(s.GFP)
			}
			l[LabelGFP] = []string{name}
		}
		if s.Migrate != 0 {
			mt := s.Migrate - 1
			name := "migratetype(" + strconv.Itoa(int(mt)) + ")"
			if b.migrateName != nil {
				name = b.migrateName(mt)
			}
			l[LabelMigrate] = []string{name}
		}
	}
	if s.Comm != "" {
		l[LabelComm] = []string{s.Comm}
	}
	if s.PID != 0 {
		l[LabelPID] = []string{strconv.FormatUint(uint64(s.PID), 10)}
	}
	// Containers and pods are named by the v2 cgroup path, or on cgroup v1
	// systems, where that is "/", by the memory cgroup's.
	var paths []string
	if s.CgroupID != 0 {
		path := s.CgroupPath
		if path == "" {
			path = strconv.FormatUint(s.CgroupID, 10)
		}
		l[LabelCgroup] = []string{path}
		paths = append(paths, path)
	}
	if s.MemcgPath != "" {
		l[LabelMemcg] = []string{s.MemcgPath}
		paths = append(paths, s.MemcgPath)
		if s.MemcgRemoved {
			l[LabelMemcgRemoved] = []string{"true"}
		}
	}
	for _, path := range paths {
		if b.container == nil {
			break
		}
		if ctr, pod := b.container(path); ctr != "" || pod != "" {
			if ctr != "" {
				l[LabelContainer] = []string{ctr}
			}
			if pod != "" {
				l[LabelPod] = []string{pod}
			}
			break
		}
	}
	if s.Pool != "" {
		l[LabelPool] = []string{s.Pool}
	}
	if s.Accounted {
		l[LabelAccounted] = []string{"true"}
	}
	if allocator != "" {
		l[LabelAllocator] = []string{allocator}
	}
	b.labelSets[ls] = l
	return l
}

// numKey is everything a sample's numeric labels depend on; -1: absent.
type numKey struct {
	avg                        int64
	hasAvg                     bool
	req, steady                int64
	growthObjects, growthSpace int64
}

// numLabel returns the numeric labels of a sample and their units, shared
// with every sample that has the same ones (nil, nil when it has none).
func (b *profileBuilder) numLabel(k numKey) (map[string][]int64, map[string][]string) {
	if l, ok := b.numLabels[k]; ok {
		return l.labels, l.units
	}
	l := numLabels{labels: map[string][]int64{}, units: map[string][]string{}}
	add := func(key string, v int64, unit string) {
		l.labels[key] = []int64{v}
		l.units[key] = []string{unit}
	}
	if k.hasAvg {
		add(LabelBytes, k.avg, "bytes")
	}
	if k.req >= 0 {
		add(LabelRequested, k.req, "bytes")
	}
	if k.steady >= 0 {
		add(LabelSteadiness, k.steady, "ppm")
	}
	if k.growthObjects >= 0 {
		add(LabelGrowthObjects, k.growthObjects, "count")
		add(LabelGrowthSpace, k.growthSpace, "bytes")
	}
	if len(l.labels) == 0 {
		l = numLabels{}
	}
	b.numLabels[k] = l
	return l.labels, l.units
}

type numLabels struct {
	labels map[string][]int64
	units  map[string][]string
}

// comments returns the profile comments: the capture facts, the counters
// (events, statistics, and every loss counter, zero or not, on one line each),
// one explanatory line per non-zero loss, then Meta.Comments. They are kept
// few because `go tool pprof -top` prints them above its table;
// `go tool pprof -comments` prints only them.
func (a *Aggregation) comments() []string {
	m := &a.Meta
	c := make([]string, 0, 8+len(m.Comments))
	head := "kmemprof"
	if p := strings.TrimSpace(m.Platform + " " + m.Kernel); p != "" {
		head += " " + p
	}
	if m.AttachMode != "" {
		head += ", attach " + m.AttachMode
	}
	c = append(c, head)
	if len(m.Hooks) > 0 {
		c = append(c, "hooks: "+strings.Join(m.Hooks, ", "))
	}
	var when []string
	if !m.Start.IsZero() {
		when = append(when, "start "+m.Start.Format(time.RFC3339))
	}
	when = append(when, "duration "+m.Duration.Round(time.Millisecond).String(), "min-age "+m.MinAge.String())
	filters := "none"
	if len(m.Filters) > 0 {
		filters = strings.Join(m.Filters, ", ")
	}
	c = append(c, strings.Join(when, ", ")+", filters: "+filters)
	if a.SampleEvery > 1 {
		c = append(c, fmt.Sprintf("sampled: 1 allocation in %d recorded; every value is scaled by %d", a.SampleEvery, a.SampleEvery))
	}
	g := groupCounters(a.Counters)
	events, stats, losses := g.events, g.stats, g.losses
	var explain []string
	for _, k := range g.lost {
		explain = append(explain, "loss "+counterComment(k))
	}
	if len(events) > 0 {
		c = append(c, "events: "+strings.Join(events, " "))
	}
	if len(stats) > 0 {
		c = append(c, "counters: "+strings.Join(stats, " "))
	}
	if len(losses) > 0 {
		c = append(c, "losses: "+strings.Join(losses, " "))
	}
	c = append(c, explain...)
	if line := untracedLine(a.UntracedFrees); line != "" {
		c = append(c, line)
	}
	if a.SelfCheck != nil {
		for _, l := range a.SelfCheck.Lines() {
			c = append(c, strings.TrimSpace(l))
		}
	}
	c = append(c, m.Comments...)
	return c
}

// untracedLine lists the caches some of whose frees were not seen, most
// first; "" when there are none.
func untracedLine(untraced map[string]uint64) string {
	if len(untraced) == 0 {
		return ""
	}
	type kv struct {
		name string
		n    uint64
	}
	var all []kv
	for name, n := range untraced {
		all = append(all, kv{name, n})
	}
	slices.SortFunc(all, func(x, y kv) int { return cmp.Or(cmp.Compare(y.n, x.n), cmp.Compare(x.name, y.name)) })
	var parts []string
	for i, e := range all {
		if i == 8 {
			parts = append(parts, fmt.Sprintf("and %d more", len(all)-i))
			break
		}
		name := e.name
		if name == "" {
			name = "[unknown cache]"
		}
		parts = append(parts, fmt.Sprintf("%s %d", name, e.n))
	}
	return "frees untraced (objects reused while still tracked; in-use counts of these caches may include freed objects): " + strings.Join(parts, ", ")
}

// counterGroups are the counters as the summary and the comments show them:
// "name=value" for events (without the events_ prefix), other statistics
// and every loss counter, and the loss counters that are not zero.
type counterGroups struct {
	events, stats, losses []string
	lost                  []Counter
}

func groupCounters(cs []Counter) counterGroups {
	var g counterGroups
	for _, c := range cs {
		kv := c.Name + "=" + strconv.FormatUint(c.Value, 10)
		switch {
		case c.Loss:
			g.losses = append(g.losses, kv)
			if c.Value != 0 {
				g.lost = append(g.lost, c)
			}
		case strings.HasPrefix(c.Name, "events_"):
			g.events = append(g.events, strings.TrimPrefix(kv, "events_"))
		default:
			g.stats = append(g.stats, kv)
		}
	}
	return g
}

func counterComment(k Counter) string {
	s := k.Name + "=" + strconv.FormatUint(k.Value, 10)
	if k.Help != "" {
		s += ": " + k.Help
	}
	return s
}
