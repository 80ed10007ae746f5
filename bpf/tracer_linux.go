package bpf

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/kmemprof/kmemprof/tracer"
)

// Tracer is an attached set of BPF programs and their maps. Close detaches
// the programs and frees the maps; it must be called on every exit path (the
// kernel also detaches them when the process exits, since nothing is pinned).
type Tracer struct {
	cfg      Config
	coll     *ebpf.Collection
	links    []link.Link
	progs    []*ebpf.Program // attached programs, for stats
	mode     Mode
	hooks    []string
	start    time.Time
	stop     time.Time // when Detach ran; zero while tracing
	notes    []string  // what the attach chose or skipped, for the profile
	cgroupFD *os.File
	clock    *ebpf.Variable
	stopTick chan struct{}
	tickDone chan struct{}
	sites    *siteCooler // adaptive mode only
	// partialIDs numbers the call sites of records whose stack was not walked.
	partialIDs map[uint64]tracer.StackID
}

// clockTick is how often the allocation clock (clock_ns in the BPF program)
// is advanced: the resolution of allocation times and ages.
const clockTick = 10 * time.Millisecond

// startClock sets the allocation clock and advances it every clockTick until
// Detach.
func (t *Tracer) startClock() error {
	t.clock = t.coll.Variables["clock_ns"]
	if t.clock == nil {
		return errors.New("BPF object has no variable clock_ns")
	}
	if err := t.setClock(); err != nil {
		return err
	}
	t.stopTick, t.tickDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(t.tickDone)
		tick := time.NewTicker(clockTick)
		defer tick.Stop()
		for n := 1; ; n++ {
			select {
			case <-t.stopTick:
				return
			case <-tick.C:
				t.setClock()
				if t.sites != nil && n%coolEvery == 0 {
					t.sites.cool()
				}
			}
		}
	}()
	return nil
}

func (t *Tracer) setClock() error {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return fmt.Errorf("reading CLOCK_MONOTONIC: %w", err)
	}
	if err := t.clock.Set(uint64(ts.Nano())); err != nil {
		return fmt.Errorf("setting the allocation clock: %w", err)
	}
	return nil
}

// typedHook is one tracepoint hook, reached as tp_btf, raw_tp or a classic
// tracepoint.
type typedHook struct {
	kind   tracer.Kind
	prog   string // program name suffix: btf_<prog>, raw_<prog>, tp_<prog>
	group  string
	event  string
	needed bool // a mode that cannot attach it fails; others are skipped with a note
}

var typedHooks = []typedHook{
	{tracer.KindSlab, "cache_alloc", "kmem", "kmem_cache_alloc", true},
	{tracer.KindSlab, "cache_free", "kmem", "kmem_cache_free", true},
	{tracer.KindSlab, "kmalloc", "kmem", "kmalloc", true},
	{tracer.KindSlab, "kfree", "kmem", "kfree", true},
	{tracer.KindPage, "page_alloc", "kmem", "mm_page_alloc", true},
	{tracer.KindPage, "page_free", "kmem", "mm_page_free", true},
	{tracer.KindPage, "page_freeb", "kmem", "mm_page_free_batched", false},
	{tracer.KindPercpu, "pcpu_alloc", "percpu", "percpu_alloc_percpu", true},
	{tracer.KindPercpu, "pcpu_free", "percpu", "percpu_free_percpu", true},
}

// kprobeHook attaches one program to the first existing of several allocator
// function names (current names first, pre-6.10 names after).
type kprobeHook struct {
	prog     string
	symbols  []string
	needed   bool
	retprobe bool // also attach krp_alloc as a kretprobe on the same symbol
}

func kprobeHooks(bucketedKmallocNode bool) []kprobeHook {
	kmallocNode := "kp_kmalloc"
	if bucketedKmallocNode {
		kmallocNode = "kp_kmalloc_b"
	}
	return []kprobeHook{
		{"kp_cache_alloc", []string{"kmem_cache_alloc_noprof", "kmem_cache_alloc"}, true, true},
		{"kp_cache_alloc", []string{"kmem_cache_alloc_node_noprof", "kmem_cache_alloc_node"}, false, true},
		{"kp_cache_alloc_lru", []string{"kmem_cache_alloc_lru_noprof", "kmem_cache_alloc_lru"}, false, true},
		{"kp_kmalloc", []string{"__kmalloc_noprof", "__kmalloc"}, true, true},
		{kmallocNode, []string{"__kmalloc_node_noprof", "__kmalloc_node"}, false, true},
		{"kp_kmalloc", []string{"__kmalloc_large_noprof", "kmalloc_large"}, false, true},
		{"kp_kmalloc", []string{"__kmalloc_large_node_noprof", "kmalloc_large_node"}, false, true},
		{"kp_kmalloc_cache", []string{"__kmalloc_cache_noprof", "kmalloc_trace"}, false, true},
		{"kp_kmalloc_cnode", []string{"__kmalloc_cache_node_noprof", "kmalloc_node_trace"}, false, true},
		{"kp_cache_free", []string{"kmem_cache_free"}, true, false},
		{"kp_kfree", []string{"kfree"}, true, false},
	}
}

// Open loads the BPF programs for cfg and attaches them. With ModeAuto it
// tries each mode of AutoOrder and keeps the first whose programs all load and
// attach; the error lists why each mode failed. A rejected program's error
// carries the verifier log in full (print it with %+v).
func Open(cfg Config) (*Tracer, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if cfg.SelfPID == 0 {
		cfg.SelfPID = uint32(os.Getpid())
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raising RLIMIT_MEMLOCK: %w", err)
	}
	spec, err := loadKmemprof()
	if err != nil {
		return nil, fmt.Errorf("reading the embedded BPF object: %w", err)
	}
	modes := []Mode{cfg.Mode}
	if cfg.Mode == ModeAuto {
		modes = AutoOrder
	}
	var errs []string
	for _, m := range modes {
		t, err := open(spec, cfg, m)
		if err == nil {
			if len(errs) > 0 {
				t.notes = append(t.notes, "attach auto: "+strings.Join(errs, "; "))
			}
			return t, nil
		}
		if len(modes) == 1 {
			return nil, err
		}
		errs = append(errs, fmt.Sprintf("%s: %v", m, err))
	}
	return nil, fmt.Errorf("%w: every attach mode failed:\n  %s", ErrAttach, strings.Join(errs, "\n  "))
}

// LoadOnly loads (but does not attach) the programs of one mode, to check that
// the kernel's verifier accepts them. It returns the program names loaded.
func LoadOnly(cfg Config, mode Mode) ([]string, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raising RLIMIT_MEMLOCK: %w", err)
	}
	spec, err := loadKmemprof()
	if err != nil {
		return nil, fmt.Errorf("reading the embedded BPF object: %w", err)
	}
	names, err := programsFor(cfg, mode)
	if err != nil {
		return nil, err
	}
	coll, err := loadCollection(spec, cfg, names)
	if err != nil {
		return nil, err
	}
	coll.Close()
	return names, nil
}

// programsFor lists the programs a mode loads for the configured kinds.
func programsFor(cfg Config, mode Mode) ([]string, error) {
	var names []string
	switch mode {
	case ModeRawTP, ModeTPBTF, ModeTracepoint:
		prefix := map[Mode]string{ModeRawTP: "raw_", ModeTPBTF: "btf_", ModeTracepoint: "tp_"}[mode]
		for _, h := range typedHooks {
			if cfg.has(h.kind) {
				names = append(names, prefix+h.prog)
			}
		}
		if mode != ModeTracepoint && cfg.has(tracer.KindSlab) {
			names = append(names, "resolve_cache")
		}
	case ModeKprobe:
		if cfg.has(tracer.KindPage) || cfg.has(tracer.KindPercpu) {
			return nil, fmt.Errorf("%w: kprobe mode traces slab allocations only; use --attach raw_tp, tp_btf or tracepoint for page and percpu", ErrAttach)
		}
		names = []string{"kp_cache_alloc", "kp_cache_alloc_lru", "kp_kmalloc", "kp_kmalloc_b", "kp_kmalloc_cache", "kp_kmalloc_cnode", "krp_alloc", "kp_cache_free", "kp_kfree", "resolve_cache"}
	default:
		return nil, fmt.Errorf("unknown attach mode %q", mode)
	}
	return names, nil
}

// loadCollection loads the maps and the named programs, sized and configured
// from cfg.
func loadCollection(base *ebpf.CollectionSpec, cfg Config, progs []string) (*ebpf.Collection, error) {
	spec := base.Copy()
	keep := map[string]bool{}
	for _, p := range progs {
		keep[p] = true
	}
	for name := range spec.Programs {
		if !keep[name] {
			delete(spec.Programs, name)
		}
	}
	for _, p := range progs {
		if spec.Programs[p] == nil {
			return nil, fmt.Errorf("BPF object has no program %s", p)
		}
	}
	// Twice as many slots as allocations keeps buckets of 8 slots from
	// overflowing (a load factor of at most 1/2).
	bits := tableBits(cfg.MaxOutstanding)
	spec.Maps["table_keys"].MaxEntries = 1 << bits
	spec.Maps["table_keys"].Flags |= unix.BPF_F_MMAPABLE // read through mmap (readTable)
	spec.Maps["table_recs"].MaxEntries = (1 << bits) * bucketWays
	spec.Maps["table_recs"].Flags |= unix.BPF_F_MMAPABLE
	spec.Maps["stacks"].MaxEntries = uint32(cfg.MaxStacks)
	spec.Maps["stacks"].ValueSize = uint32(cfg.StackDepth * 8)
	// The second-chance store for stacks that collide in the stack map.
	stacks2 := uint32(max(cfg.MaxStacks/4, 1024))
	spec.Maps["stacks2"].MaxEntries = stacks2
	spec.Maps["stacks2_index"].MaxEntries = stacks2
	// One totals entry per distinct stack and labels: far fewer than records.
	spec.Maps["totals"].MaxEntries = uint32(max(cfg.MaxStacks*2, 4096))

	set := func(name string, v any) error {
		vs := spec.Variables[name]
		if vs == nil {
			return fmt.Errorf("BPF object has no variable %s", name)
		}
		if err := vs.Set(v); err != nil {
			return fmt.Errorf("setting %s: %w", name, err)
		}
		return nil
	}
	var filters [MaxCacheFilters][32]int8
	for i, c := range cfg.Caches {
		for j := 0; j < len(c); j++ {
			filters[i][j] = int8(c[j])
		}
	}
	var cgFilter uint8
	if cfg.CgroupPath != "" {
		cgFilter = 1
	}
	for _, kv := range []struct {
		name string
		v    any
	}{
		{"self_tgid", cfg.SelfPID},
		{"filter_tgid", cfg.PID},
		{"filter_cgroup", cgFilter},
		{"min_size", cfg.MinSize},
		{"cache_filter_n", uint32(len(cfg.Caches))},
		{"cache_filter", filters},
		{"table_bits", uint32(bits)},
		{"stack_base", uint32(cfg.MaxStacks)},
		{"stacks2_size", stacks2},
		{"trace_mode", trackingCode(cfg.Tracking)},
		{"hot_threshold", int64(cfg.HotThreshold)},
		{"sample_every", uint32(cfg.SampleEvery)},
		{"keep_totals", boolByte(cfg.Tracking != TrackAdaptive)},
		{"count_caches", boolByte(cfg.CountCaches)},
	} {
		if err := set(kv.name, kv.v); err != nil {
			return nil, err
		}
	}

	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{})
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("loading BPF programs (verifier log follows): %+v", ve)
		}
		return nil, fmt.Errorf("loading BPF programs: %w", err)
	}
	return coll, nil
}

// bucketWays is BUCKET_WAYS of kmemprof.bpf.c: slots per table bucket.
const bucketWays = 8

// tableBits returns log2 of the number of buckets for n outstanding
// allocations: at least 2n slots, at least 2^10 buckets.
func tableBits(n int) int {
	bits := 10
	for (1<<bits)*bucketWays < 2*n {
		bits++
	}
	return bits
}

func trackingCode(t Tracking) uint8 {
	switch t {
	case TrackAdaptive:
		return 1
	case TrackSample:
		return 2
	}
	return 0
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func open(spec *ebpf.CollectionSpec, cfg Config, mode Mode) (_ *Tracer, err error) {
	names, err := programsFor(cfg, mode)
	if err != nil {
		return nil, err
	}
	var bucketed bool
	if mode == ModeKprobe {
		bucketed = kmallocNodeHasBuckets()
	}
	coll, err := loadCollection(spec, cfg, names)
	if err != nil {
		return nil, err
	}
	t := &Tracer{cfg: cfg, coll: coll, mode: mode}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	if err := t.setCgroupFilter(); err != nil {
		return nil, err
	}
	if err := t.registerKmallocCaches(); err != nil {
		return nil, err
	}
	if cfg.Tracking == TrackAdaptive {
		if t.sites, err = newSiteCooler(t.coll.Maps["sites"], int64(cfg.HotThreshold)); err != nil {
			return nil, err
		}
	}
	if err := t.startClock(); err != nil {
		return nil, err
	}
	switch mode {
	case ModeKprobe:
		err = t.attachKprobes(bucketed)
	default:
		err = t.attachTyped(mode)
	}
	if err != nil {
		return nil, err
	}
	t.start = time.Now()
	return t, nil
}

func (t *Tracer) attachTyped(mode Mode) error {
	for _, h := range typedHooks {
		if !t.cfg.has(h.kind) {
			continue
		}
		var name string
		var l link.Link
		var err error
		switch mode {
		case ModeRawTP:
			name = "raw_" + h.prog
			l, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: h.event, Program: t.coll.Programs[name]})
		case ModeTPBTF:
			name = "btf_" + h.prog
			l, err = link.AttachTracing(link.TracingOptions{Program: t.coll.Programs[name]})
		case ModeTracepoint:
			name = "tp_" + h.prog
			l, err = link.Tracepoint(h.group, h.event, t.coll.Programs[name], nil)
		}
		if err != nil {
			if !h.needed {
				t.notes = append(t.notes, fmt.Sprintf("%s:%s not attached (%v)", h.group, h.event, err))
				continue
			}
			return fmt.Errorf("%w: %s %s:%s: %v%s", ErrAttach, mode, h.group, h.event, err, attachHint(mode, err))
		}
		t.links = append(t.links, l)
		t.progs = append(t.progs, t.coll.Programs[name])
		t.hooks = append(t.hooks, h.group+":"+h.event)
	}
	return nil
}

// attachHint names the kernel support a failed attach lacks.
func attachHint(mode Mode, err error) string {
	switch mode {
	case ModeTracepoint:
		if errors.Is(err, os.ErrNotExist) {
			return " (is tracefs mounted? mount -t tracefs nodev /sys/kernel/tracing)"
		}
	case ModeTPBTF:
		return " (tp_btf needs kernel BTF, CONFIG_DEBUG_INFO_BTF=y, and Linux 5.5+)"
	case ModeRawTP:
		return " (raw_tp needs Linux 4.17+)"
	}
	return ""
}

func (t *Tracer) attachKprobes(bucketed bool) error {
	var failures []string
	for _, h := range kprobeHooks(bucketed) {
		prog := t.coll.Programs[h.prog]
		attached := false
		var lastErr error
		for _, sym := range h.symbols {
			if t.cfg.HasSymbol != nil && !t.cfg.HasSymbol(sym) {
				continue
			}
			l, err := link.Kprobe(sym, prog, nil)
			if err != nil {
				if lastErr == nil { // report the current name, not an old alias
					lastErr = fmt.Errorf("kprobe %s: %w", sym, err)
				}
				continue
			}
			t.links = append(t.links, l)
			if h.retprobe {
				rl, err := link.Kretprobe(sym, t.coll.Programs["krp_alloc"], nil)
				if err != nil {
					lastErr = fmt.Errorf("kretprobe %s: %w", sym, err)
					continue
				}
				t.links = append(t.links, rl)
			}
			t.hooks = append(t.hooks, "kprobe:"+sym)
			attached = true
			break
		}
		if attached {
			continue
		}
		if lastErr == nil {
			lastErr = fmt.Errorf("none of %s exists in this kernel", strings.Join(h.symbols, ", "))
		}
		if h.needed {
			if hint := kprobeHint(); hint != "" {
				return fmt.Errorf("%w: %s (%v)", ErrAttach, hint, lastErr)
			}
			return fmt.Errorf("%w: %v", ErrAttach, lastErr)
		}
		failures = append(failures, lastErr.Error())
	}
	if len(failures) > 0 {
		t.notes = append(t.notes, "kprobe: skipped "+strings.Join(failures, "; "))
	}
	t.progs = append(t.progs, t.coll.Programs["krp_alloc"], t.coll.Programs["kp_kfree"])
	return nil
}

// kprobeHint says why kprobes may be unavailable.
func kprobeHint() string {
	if _, err := os.Stat("/sys/bus/event_source/devices/kprobe"); err != nil {
		return "this kernel has no kprobe support (it needs CONFIG_KPROBES=y and CONFIG_KPROBE_EVENTS=y; " +
			"/sys/bus/event_source/devices/kprobe is missing): use --attach raw_tp, tp_btf or tracepoint"
	}
	return ""
}

// kmallocNodeHasBuckets reports whether __kmalloc_node_noprof takes a
// kmem_buckets argument (CONFIG_SLAB_BUCKETS), which moves gfp to the third
// argument.
func kmallocNodeHasBuckets() bool {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return false
	}
	var fn *btf.Func
	if err := spec.TypeByName("__kmalloc_node_noprof", &fn); err != nil {
		return false
	}
	proto, ok := fn.Type.(*btf.FuncProto)
	return ok && len(proto.Params) == 4
}

func (t *Tracer) setCgroupFilter() error {
	if t.cfg.CgroupPath == "" {
		return nil
	}
	f, err := os.Open(t.cfg.CgroupPath)
	if err != nil {
		return fmt.Errorf("opening cgroup %s: %w", t.cfg.CgroupPath, err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		f.Close()
		return fmt.Errorf("checking cgroup %s: %w", t.cfg.CgroupPath, err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		f.Close()
		return fmt.Errorf("--cgroup %s is not a cgroup v2 directory; give its path under the cgroup2 mount (%s)", t.cfg.CgroupPath, Cgroup2Mount())
	}
	if err := t.coll.Maps["cgroup_filter"].Put(uint32(0), uint32(f.Fd())); err != nil {
		f.Close()
		return fmt.Errorf("setting the cgroup filter: %w", err)
	}
	t.cgroupFD = f
	return nil
}

// kmallocSizes are the kmalloc size classes; 0 stands for kmalloc-large.
var kmallocSizes = []uint64{8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192, 0}

// registerKmallocCaches puts every kmalloc cache id into the caches map with
// its --cache verdict, since the kernel side cannot format the names.
func (t *Tracer) registerKmallocCaches() error {
	if len(t.cfg.Caches) == 0 {
		return nil
	}
	allowed := map[string]bool{}
	for _, c := range t.cfg.Caches {
		allowed[c] = true
	}
	m := t.coll.Maps["caches"]
	for variant := uint64(0); variant < 4; variant++ {
		for _, size := range kmallocSizes {
			id := kmallocIDBase | variant<<16 | size
			name := kmallocName(id)
			var ci kmemprofCacheInfo
			copy8(ci.Name[:], name)
			if allowed[name] || allowed[kmallocName(kmallocIDBase|size)] {
				ci.Allowed = 1
			}
			if err := m.Put(id, ci); err != nil {
				return fmt.Errorf("registering kmalloc caches: %w", err)
			}
		}
	}
	return nil
}

func copy8(dst []int8, s string) {
	for i := 0; i < len(s) && i < len(dst)-1; i++ {
		dst[i] = int8(s[i])
	}
}

// Mode returns the attach mode in use.
func (t *Tracer) Mode() Mode { return t.mode }

// Hooks returns the hooks attached, e.g. "kmem:kmalloc" or "kprobe:kfree".
func (t *Tracer) Hooks() []string { return append([]string(nil), t.hooks...) }

// Notes returns what the attach skipped or chose, for the user and the profile.
func (t *Tracer) Notes() []string { return append([]string(nil), t.notes...) }

// ProgramIDs returns the kernel ids of the loaded programs.
func (t *Tracer) ProgramIDs() []ebpf.ProgramID {
	var ids []ebpf.ProgramID
	for _, p := range t.coll.Programs {
		if info, err := p.Info(); err == nil {
			if id, ok := info.ID(); ok {
				ids = append(ids, id)
			}
		}
	}
	return ids
}

// Detach stops tracing: it closes every link so no program runs any more,
// while the maps stay readable for Snapshot. It is safe to call twice.
func (t *Tracer) Detach() error {
	var errs []error
	for _, l := range t.links {
		if err := l.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	t.links = nil
	if t.stopTick != nil {
		close(t.stopTick)
		<-t.tickDone
		t.stopTick = nil
	}
	if t.stop.IsZero() && !t.start.IsZero() {
		t.stop = time.Now()
	}
	if len(errs) > 0 {
		return fmt.Errorf("detaching BPF programs: %w", errors.Join(errs...))
	}
	return nil
}

// Close detaches the programs and frees every kernel object of the tracer.
func (t *Tracer) Close() error {
	err := t.Detach()
	if t.coll != nil {
		t.coll.Close()
		t.coll = nil
	}
	if t.cgroupFD != nil {
		t.cgroupFD.Close()
		t.cgroupFD = nil
	}
	return err
}

// Stats is a cheap live view of the kernel-side counters.
type Stats struct {
	Events      uint64 // events seen by every hook
	Outstanding uint64 // allocations tracked now
	Losses      uint64 // sum of the loss counters
}

// Stats reads the kernel-side counters.
func (t *Tracer) Stats() (Stats, error) {
	c, err := t.readCounters()
	if err != nil {
		return Stats{}, err
	}
	var s Stats
	for i := 0; i < nrHooks; i++ {
		s.Events += c[i]
	}
	if c[cTracked] > c[cFreed] {
		s.Outstanding = c[cTracked] - c[cFreed]
	}
	for i := nrHooks; i < nrCounters; i++ {
		if counterInfo[i].loss {
			s.Losses += c[i]
		}
	}
	return s, nil
}

func (t *Tracer) readCounters() ([nrCounters]uint64, error) {
	var out [nrCounters]uint64
	m := t.coll.Maps["counters"]
	var vals []uint64
	for i := uint32(0); i < nrCounters; i++ {
		if err := m.Lookup(i, &vals); err != nil {
			return out, fmt.Errorf("reading counter %d: %w", i, err)
		}
		for _, v := range vals {
			out[i] += v
		}
	}
	return out, nil
}

// monoToWall converts bpf_ktime_get_ns timestamps (CLOCK_MONOTONIC) to wall time.
type monoToWall struct {
	wall time.Time
	mono int64
}

func newMonoToWall() (monoToWall, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return monoToWall{}, fmt.Errorf("reading CLOCK_MONOTONIC: %w", err)
	}
	return monoToWall{wall: time.Now(), mono: ts.Nano()}, nil
}

// at returns the wall time of a CLOCK_MONOTONIC timestamp, in Unix nanoseconds.
func (c monoToWall) at(ns uint64) int64 {
	return c.wall.UnixNano() - (c.mono - int64(ns))
}

// KernelRelease returns uname -r, or "unknown".
func KernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}
