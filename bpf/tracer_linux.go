package bpf

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/kmemprof/kmemprof/tracer"
)

// Tracer is an attached set of BPF programs and their maps. Close detaches
// the programs and frees the maps; it must be called on every exit path (the
// kernel also detaches them when the process exits, since nothing is pinned).
type Tracer struct {
	cfg  Config
	coll *ebpf.Collection
	maps kmemprofMaps // owned by the Tracer, not by coll
	vars kmemprofVariables
	// mu guards links, progs, progRoles, notes, pending and detached: the
	// clock goroutine attaches backup programs while the capture runs.
	mu    sync.Mutex
	links []link.Link
	// linkKinds says, for each of links, what it is.
	linkKinds []linkKind
	progs     []*ebpf.Program // attached programs, for stats
	// progRoles says, for each of progs, whether it is a free hook's
	// primary program with a backup, the backup, or neither.
	progRoles []progRole
	// pending are the free hooks' backup programs not attached yet
	// (Config.LazyBackups): each is attached the first time the kernel
	// reports a free it did not run the hook's primary program for (see
	// armBackups).
	pending  []pendingBackup
	detached bool
	mode     Mode
	hooks    []string
	start    time.Time
	stop     time.Time // when Detach ran; zero while tracing
	// attachTime is how long attaching every program took (seconds for
	// kprobes under emulation).
	attachTime time.Duration
	notes      []string // what the attach chose or skipped, for the profile
	cgroupFD   *os.File
	clock      *ebpf.Variable
	stopTick   chan struct{}
	tickDone   chan struct{}
	sites      *siteCooler // adaptive mode only
	// hashTable: the outstanding table is table_hash (kernels without BPF
	// atomics) instead of table_keys/table_recs.
	hashTable bool
	// bulkHooked: kmem_cache_free_bulk is hooked, so every slab free path is.
	bulkHooked bool
	// allocBulkHooked: kmem_cache_alloc_bulk's objects are counted
	// (bulk_allocs), though not tracked.
	allocBulkHooked bool
	// objCache: some allocations' cache is read from the object.
	objCache bool
	// plan is what was loaded and attached.
	plan *plan
	// kprobeMissed sums the kprobes the kernel skipped, read at Detach.
	kprobeMissed uint64
	// partialIDs numbers the call sites of records whose stack was not walked.
	partialIDs map[uint64]tracer.StackID
	// leafBase maps the stack ids withLeaf made to the walked stack's id.
	leafBase map[tracer.StackID]tracer.StackID
	// callerIDs and callerBase map the stacks withCaller made (arm64
	// kprobe mode) to and from their walked stack and caller.
	callerIDs  map[callerStack]tracer.StackID
	callerBase map[tracer.StackID]callerStack
	// clockErrors counts the ticks whose clock update failed; clockErr is
	// the first such error.
	clockErrors atomic.Uint64
	clockErr    atomic.Pointer[error]
	// cont is the state of Config.Continuous (nil without it).
	cont *continuous
	// rcu samples rcu_frees every second, for the self-check.
	rcu rcuHistory
}

// clockTick is how often the allocation clock (clock_ns in the BPF program)
// is advanced: the resolution of allocation times and ages.
const clockTick = 10 * time.Millisecond

// startClock sets the allocation clock and advances it every clockTick until
// Detach.
func (t *Tracer) startClock() error {
	t.clock = t.vars.ClockNs // bound at load (coll.Assign): never nil
	if err := t.setClock(); err != nil {
		return err
	}
	t.stopTick, t.tickDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(t.tickDone)
		tick := time.NewTicker(clockTick)
		defer tick.Stop()
		// Rounds go by time, not by ticks: a busy machine drops ticks.
		lastCool := time.Now()
		for {
			select {
			case <-t.stopTick:
				return
			case now := <-tick.C:
				if err := t.setClock(); err != nil {
					// Allocations recorded until the next tick get an
					// older time: counted, with the first error kept.
					t.clockErrors.Add(1)
					t.clockErr.CompareAndSwap(nil, &err)
				}
				t.armBackups()
				if now.Sub(lastCool) >= coolEvery {
					lastCool = now
					if t.sites != nil {
						t.sites.cool()
					}
					t.sampleRCU(now)
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
	if err := removeMemlock(); err != nil {
		return nil, err
	}
	spec, err := loadKmemprof()
	if err != nil {
		return nil, fmt.Errorf("reading the embedded BPF object: %w", err)
	}
	modes := []Mode{cfg.Mode}
	if cfg.Mode == ModeAuto {
		modes = AutoOrder
	}
	t, err := openModes(spec, cfg, modes)
	if err != nil {
		if why := lockdownRefusal(lockdownMode(readOptional("/sys/kernel/security/lockdown"), readOptional("/proc/cmdline"))); why != "" {
			return nil, fmt.Errorf("%w: %s (the kernel said: %s)", ErrAttach, why, firstLine(err))
		}
	}
	return t, err
}

// openModes opens the first of modes that loads and attaches.
func openModes(spec *ebpf.CollectionSpec, cfg Config, modes []Mode) (*Tracer, error) {
	var errs []string
	for _, m := range modes {
		t, err := open(spec, cfg, m)
		if err == nil {
			if len(errs) > 0 {
				t.mu.Lock()
				t.notes = append(t.notes, "attach auto: "+strings.Join(errs, "; "))
				t.mu.Unlock()
			}
			return t, nil
		}
		if len(modes) == 1 {
			return nil, err
		}
		errs = append(errs, fmt.Sprintf("%s: %v", m, firstLine(err)))
	}
	return nil, fmt.Errorf("%w: every attach mode failed:\n  %s", ErrAttach, strings.Join(errs, "\n  "))
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}

// LoadOnly loads (but does not attach) the programs of one mode, to check that
// the kernel's verifier accepts them. It returns the program names loaded.
func LoadOnly(cfg Config, mode Mode) ([]string, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := removeMemlock(); err != nil {
		return nil, err
	}
	spec, err := loadKmemprof()
	if err != nil {
		return nil, fmt.Errorf("reading the embedded BPF object: %w", err)
	}
	p, err := makePlan(cfg, mode, true)
	if err != nil {
		return nil, err
	}
	coll, err := loadCollection(spec, cfg, p)
	if err != nil {
		return nil, err
	}
	coll.Close()
	var names []string
	for _, pl := range p.progs {
		names = append(names, pl.key)
	}
	return names, nil
}

// cgroupNamesPrealloc is the capacity of cgroup_names where it must be
// preallocated (kernels before 6.1): cgroups made between two snapshots
// beyond it are counted (cgroup_names_full).
const cgroupNamesPrealloc = 2048

// bucketWays is BUCKET_WAYS of kmemprof.h: slots per table bucket.
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
	case TrackCount:
		return 3
	}
	return 0
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// loadCollection loads the maps and the programs of a plan, sized and
// configured from cfg and the plan.
func loadCollection(base *ebpf.CollectionSpec, cfg Config, p *plan) (*ebpf.Collection, error) {
	spec := base.Copy()
	progs := map[string]*ebpf.ProgramSpec{}
	for _, pl := range p.progs {
		src := spec.Programs[pl.from]
		if src == nil {
			return nil, fmt.Errorf("BPF object has no program %s", pl.from)
		}
		ps := src.Copy()
		if pl.typ != ebpf.UnspecifiedProgram {
			ps.Type = pl.typ
			ps.AttachType = pl.attachType
		}
		if pl.attachTo != "" {
			ps.AttachTo = pl.attachTo
		}
		progs[pl.key] = ps
	}
	spec.Programs = progs

	var ms kmemprofMapSpecs
	if err := spec.Assign(&ms); err != nil {
		return nil, fmt.Errorf("binding the BPF map specs: %w", err)
	}
	if p.hashTable {
		ms.TableHash.MaxEntries = uint32(cfg.MaxOutstanding)
	} else {
		// Twice as many slots as allocations keeps buckets of 8 slots from
		// overflowing (a load factor of at most 1/2).
		bits := tableBits(cfg.MaxOutstanding)
		ms.TableKeys.MaxEntries = 1 << bits
		ms.TableKeys.Flags |= unix.BPF_F_MMAPABLE // read through mmap (readTable)
		ms.TableRecs.MaxEntries = (1 << bits) * bucketWays
		ms.TableRecs.Flags |= unix.BPF_F_MMAPABLE
	}
	ms.Stacks.MaxEntries = uint32(cfg.MaxStacks)
	ms.Stacks.ValueSize = uint32(cfg.StackDepth * 8)
	// The second-chance store for stacks that collide in the stack map.
	stacks2 := uint32(max(cfg.MaxStacks/4, 1024))
	if p.hashTable {
		stacks2 = 1 // it needs atomics
	}
	ms.Stacks2.MaxEntries = stacks2
	ms.Stacks2Index.MaxEntries = stacks2
	// One totals entry per distinct stack and labels: far fewer than records.
	ms.Totals.MaxEntries = uint32(max(cfg.MaxStacks*2, 4096))
	if !p.fn {
		ms.KpPending.MaxEntries = 1
	}
	// cgroup_names allocates its 520-byte paths as cgroups are made. Before
	// the BPF memory allocator (6.1) the verifier takes such a map in a
	// tracing program with a kernel WARNING ("trace type BPF program uses
	// run-time allocation"): there it is preallocated, and smaller.
	if !p.features.memAlloc {
		ms.CgroupNames.Flags &^= unix.BPF_F_NO_PREALLOC
		ms.CgroupNames.MaxEntries = cgroupNamesPrealloc
	}

	var vs kmemprofVariableSpecs
	if err := spec.Assign(&vs); err != nil {
		return nil, fmt.Errorf("binding the BPF variables: %w", err)
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
	var fnLayouts [nrFnSlots]kmemprofFnLayout
	var fnAddrs [nrFnSlots]uint64
	for i, s := range p.slots {
		fnLayouts[i] = s.layout
		fnAddrs[i] = p.slotAddrs[i]
	}
	// Page allocations' call sites, for the adaptive mode's decisions.
	var pageRanges [nrPageRanges][2]uint64
	var pageRangeN uint32
	if cfg.Tracking == TrackAdaptive && cfg.has(tracer.KindPage) && !p.loadOnly {
		var note string
		pageRanges, pageRangeN, note = pageRangeConsts()
		if note != "" {
			p.notes = append(p.notes, note)
		}
	}
	pageShift := uint32(0)
	for 1<<pageShift < os.Getpagesize() {
		pageShift++
	}
	for _, kv := range []struct {
		vs *ebpf.VariableSpec
		v  any
	}{
		{vs.SelfTgid, cfg.SelfPID},
		{vs.FilterTgid, cfg.PID},
		{vs.FilterTree, boolByte(cfg.Follow)},
		{vs.FilterCgroup, cgFilter},
		{vs.FilterMemcg, cfg.MemcgID},
		{vs.MemcgHierarchy, cfg.MemcgHierarchy},
		{vs.MinSize, cfg.MinSize},
		{vs.CacheFilterN, uint32(len(cfg.Caches))},
		{vs.CacheFilter, filters},
		{vs.TableBits, uint32(tableBits(cfg.MaxOutstanding))},
		{vs.StackBase, uint32(cfg.MaxStacks)},
		{vs.Stacks2Size, stacks2},
		{vs.TraceMode, trackingCode(cfg.Tracking)},
		{vs.HotThreshold, int64(cfg.HotThreshold)},
		{vs.SampleEvery, uint32(cfg.SampleEvery)},
		{vs.KeepTotals, boolByte(cfg.Tracking != TrackAdaptive && cfg.Tracking != TrackCount)},
		{vs.CountCaches, boolByte(cfg.CountCaches)},
		{vs.HaveTaskBtf, boolByte(p.features.taskBTF)},
		{vs.CtxDirect, boolByte(p.ctxDirect)},
		{vs.TypedCtx, boolByte(p.mode == ModeTPBTF)},
		{vs.ArgIdx, p.argIdx},
		{vs.TpOff, p.tpOff},
		{vs.TpSize, p.tpSize},
		{vs.PageShift, pageShift},
		// SLUB serves kmalloc from caches up to two pages (KMALLOC_SHIFT_HIGH).
		{vs.KmallocMax, uint64(2 * os.Getpagesize())},
		{vs.NrCpus, uint32(possibleCPUs())},
		{vs.FnAlloc, fnLayouts},
		{vs.FnAddr, fnAddrs},
		{vs.DedupeNested, boolByte(p.fn)},
		{vs.RcuPtrArg, boolByte(p.rcuPtrArg)},
		{vs.PageRange, pageRanges},
		{vs.PageRangeN, pageRangeN},
	} {
		if err := kv.vs.Set(kv.v); err != nil {
			return nil, fmt.Errorf("setting %s: %w", kv.vs.Name, err)
		}
	}

	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{})
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("loading BPF programs: %s (verifier log follows):\n%+v", firstLine(err), ve)
		}
		return nil, fmt.Errorf("loading BPF programs: %w", err)
	}
	return coll, nil
}

// possibleCPUs returns the number of possible CPUs (percpu allocations take
// memory on each).
func possibleCPUs() int {
	if n, err := ebpf.PossibleCPU(); err == nil && n > 0 {
		return n
	}
	return runtime.NumCPU()
}

func open(spec *ebpf.CollectionSpec, cfg Config, mode Mode) (_ *Tracer, err error) {
	p, err := makePlan(cfg, mode, false)
	if err != nil {
		return nil, err
	}
	coll, err := loadCollection(spec, cfg, p)
	if err != nil {
		return nil, err
	}
	t := &Tracer{cfg: cfg, coll: coll, mode: mode, hashTable: p.hashTable, notes: p.notes, objCache: p.needsObjCache, plan: p}
	// The maps through the bindings bpf2go generated: a map renamed in the C
	// fails here, at load, not at its first use.
	if err := coll.Assign(&t.maps); err != nil {
		coll.Close()
		return nil, fmt.Errorf("binding the BPF maps: %w", err)
	}
	if err := coll.Assign(&t.vars); err != nil {
		coll.Close()
		t.maps.Close()
		return nil, fmt.Errorf("binding the BPF variables: %w", err)
	}
	if cfg.Continuous {
		t.cont = &continuous{}
	}
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
	if p.needsObjCache {
		if err := t.calibrate(); err != nil {
			t.notes = append(t.notes, "slab caches cannot be read from objects ("+err.Error()+"): such allocations are shown as [unknown cache]")
		} else if cfg.Tracking == TrackCount {
			if err := t.registerCaches(); err != nil {
				t.notes = append(t.notes, err.Error())
			}
		}
	}
	if cfg.Tracking == TrackAdaptive {
		if t.sites, err = newSiteCooler(t.maps.Sites, int64(cfg.HotThreshold)); err != nil {
			return nil, err
		}
	}
	if err := t.startClock(); err != nil {
		return nil, err
	}
	began := time.Now()
	if err := t.attach(p); err != nil {
		return nil, err
	}
	// From now on an allocator's return without its entry is a loss.
	if err := t.vars.Attached.Set(uint32(1)); err != nil {
		return nil, fmt.Errorf("marking the programs attached: %w", err)
	}
	t.mu.Lock()
	t.start = time.Now()
	t.attachTime = t.start.Sub(began)
	t.mu.Unlock()
	return t, nil
}

// attach makes the plan's links, needed ones first; a needed link that fails
// fails the mode, an optional one is skipped with a note.
func (t *Tracer) attach(p *plan) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var bulkWanted, bulkAttached int
	attached := map[string]*ebpf.Program{}
	labels := map[string]bool{}
	for _, a := range attachOrder(p.attach) {
		prog := t.coll.Programs[a.prog]
		if prog == nil {
			return fmt.Errorf("program %s was not loaded", a.prog)
		}
		if p.role(a.prog) == roleBackup {
			primary := attached[p.primaryOf(a.prog)]
			if primary == nil {
				continue
			}
			if t.cfg.LazyBackups {
				t.pending = append(t.pending, pendingBackup{a: a, prog: prog, primary: primary})
				continue
			}
			// The primaries note their keys from before the backup runs.
			if err := t.armBackupsVar(); err != nil {
				return err
			}
		}
		l, viaTracefs, err := attachOne(a, prog)
		if err != nil {
			if a.optional {
				t.notes = append(t.notes, fmt.Sprintf("%s not attached (%v)", a.label, err))
				continue
			}
			return fmt.Errorf("%w: %s %s: %v%s", ErrAttach, t.mode, a.label, err, attachHint(t.mode, a.how, err))
		}
		t.links = append(t.links, l)
		t.linkKinds = append(t.linkKinds, linkKind{how: a.how, paired: a.paired, tracefs: viaTracefs})
		if a.allocBulk {
			t.allocBulkHooked = true
		}
		t.progs = append(t.progs, prog)
		t.progRoles = append(t.progRoles, p.role(a.prog))
		attached[a.prog] = prog
		if a.label != "" {
			labels[a.label] = true
		}
		if a.bulk {
			bulkAttached++
		}
	}
	for _, a := range p.attach {
		if a.bulk {
			bulkWanted++
		}
		// The tracing line names the hooks in the plan's order.
		if labels[a.label] && !contains(t.hooks, a.label) {
			t.hooks = append(t.hooks, a.label)
		}
	}
	t.bulkHooked = bulkWanted > 0 && bulkAttached == bulkWanted
	if !t.bulkHooked && t.cfg.has(tracer.KindSlab) {
		t.notes = append(t.notes, "the free functions without a tracepoint (kmem_cache_free_bulk, kvfree_call_rcu) are not all hooked ("+p.bulkWhy+
			"): objects they free (kfree_bulk, kfree_rcu, maple tree nodes) stay outstanding until their memory is reused; "+
			"caches where that happened are marked \"frees untraced\"")
	}
	return nil
}

// attachOrder is the order attachments are made in: every hook that does
// not record allocations (frees, the follow tree, cgroup names) first, then
// the allocation hooks, each group in the plan's order (a kretprobe before
// its kprobe). Detach closes the links in the opposite order.
func attachOrder(as []attachment) []attachment {
	out := make([]attachment, 0, len(as))
	for _, alloc := range []bool{false, true} {
		for _, a := range as {
			if a.alloc == alloc {
				out = append(out, a)
			}
		}
	}
	return out
}

// linkKind is what an attached link is, for reading the kernel's drop
// counts at Detach.
type linkKind struct {
	how     attachHow
	paired  bool // an allocator's entry kprobe, beside its kretprobe
	tracefs bool // a kprobe made through tracefs: its drops are in kprobe_profile
}

// attachOne makes one attachment's link; viaTracefs says a kretprobe was
// made through tracefs (see makeKretprobe).
func attachOne(a attachment, prog *ebpf.Program) (l link.Link, viaTracefs bool, err error) {
	if a.how == attachKretprobe {
		return makeKretprobe(a.target, prog)
	}
	l, err = attachLink(a, prog)
	return l, false, err
}

// attachLink makes one link of any kind but a kretprobe.
func attachLink(a attachment, prog *ebpf.Program) (link.Link, error) {
	switch a.how {
	case attachRawTP:
		return link.AttachRawTracepoint(link.RawTracepointOptions{Name: a.target, Program: prog})
	case attachTracing:
		return link.AttachTracing(link.TracingOptions{Program: prog})
	case attachTracepoint:
		return link.Tracepoint(a.group, a.target, prog, nil)
	case attachKprobe:
		return link.Kprobe(a.target, prog, nil)
	}
	return nil, fmt.Errorf("unknown attachment kind %d", a.how)
}

// armBackupsVar tells the primaries to note the keys they handle, which a
// backup needs; set before a backup is attached.
func (t *Tracer) armBackupsVar() error {
	if err := t.vars.BackupsArmed.Set(uint32(1)); err != nil {
		return fmt.Errorf("arming the backup programs: %w", err)
	}
	return nil
}

// pendingBackup is a free hook's backup program, attached once its primary
// misses a nested free.
type pendingBackup struct {
	a       attachment
	prog    *ebpf.Program
	primary *ebpf.Program
}

// armBackups (Config.LazyBackups) attaches the backup of every free hook
// whose primary program the kernel has skipped for a nested event (its
// recursion_misses count, Linux 6.1+). A second program on a tracepoint
// costs every event a second dispatch, about as much as the primary's whole
// work, so lazily it is only paid where frees do arrive inside the free
// program (interrupts that free: RCU callbacks, network and block
// completions). The frees missed before it is attached (those of the first
// such interrupt) are counted as lost (prog_recursion_misses), and their
// objects stay outstanding until their memory is allocated again
// (alloc_at_tracked_ptr).
func (t *Tracer) armBackups() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.detached || len(t.pending) == 0 {
		return
	}
	rest := t.pending[:0]
	for _, pb := range t.pending {
		st, err := pb.primary.Stats()
		if err != nil || st.RecursionMisses == 0 {
			rest = append(rest, pb)
			continue
		}
		if err := t.armBackupsVar(); err != nil {
			rest = append(rest, pb)
			continue
		}
		l, viaTracefs, err := attachOne(pb.a, pb.prog)
		if err != nil {
			t.notes = append(t.notes, fmt.Sprintf("the backup program of a free hook (%s) failed to attach (%v): frees nested in its primary program are lost (prog_recursion_misses)", pb.a.target, err))
			continue
		}
		t.links = append(t.links, l)
		t.linkKinds = append(t.linkKinds, linkKind{how: pb.a.how, tracefs: viaTracefs})
		t.progs = append(t.progs, pb.prog)
		t.progRoles = append(t.progRoles, roleBackup)
		at := time.Duration(0)
		if !t.start.IsZero() {
			at = time.Since(t.start).Round(time.Millisecond)
		}
		t.notes = append(t.notes, fmt.Sprintf("%s: frees nested in the free program seen after %v; its backup program handles them from then on (%d missed before: prog_recursion_misses)",
			pb.a.target, at, st.RecursionMisses))
	}
	t.pending = rest
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// attachHint names the kernel support a failed attach lacks.
func attachHint(mode Mode, how attachHow, err error) string {
	switch how {
	case attachTracepoint:
		if errors.Is(err, os.ErrNotExist) {
			return " (is tracefs mounted? mount -t tracefs nodev /sys/kernel/tracing)"
		}
	case attachKprobe, attachKretprobe:
		if hint := kprobeHint(); hint != "" {
			return " (" + hint + ")"
		}
	case attachTracing:
		if mode == ModeFentry {
			return " (fentry needs BPF trampolines: Linux 5.5+ on x86-64, 6.0+ on arm64, CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS)"
		}
		return " (tp_btf needs kernel BTF, CONFIG_DEBUG_INFO_BTF=y, and Linux 5.5+)"
	case attachRawTP:
		return " (raw_tp needs Linux 4.17+)"
	}
	return ""
}

// kprobeHint says why kprobes may be unavailable.
func kprobeHint() string {
	if _, err := os.Stat("/sys/bus/event_source/devices/kprobe"); err != nil {
		return "this kernel has no kprobe support (it needs CONFIG_KPROBES=y and CONFIG_KPROBE_EVENTS=y; " +
			"/sys/bus/event_source/devices/kprobe is missing): use --attach raw_tp, tp_btf or tracepoint"
	}
	return ""
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
		return fmt.Errorf("--cgroup %s is not a cgroup v2 directory; give a directory under the cgroup2 mount", t.cfg.CgroupPath)
	}
	if err := t.maps.CgroupFilter.Put(uint32(0), uint32(f.Fd())); err != nil {
		f.Close()
		return fmt.Errorf("setting the cgroup filter: %w", err)
	}
	t.cgroupFD = f
	return nil
}

// kmallocSizes are the kmalloc size classes; 0 stands for kmalloc-large.
var kmallocSizes = []uint64{8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 0}

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
	m := t.maps.Caches
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

// argIdxCache returns where kmem_cache_alloc passes the cache (0: it does not).
func (t *Tracer) argIdxCache() uint8 { return t.plan.argIdx[hookCacheAlloc][fCache] }

// AttachTime returns how long attaching the programs took: when Open
// returns, every program is attached and runs for every event.
func (t *Tracer) AttachTime() time.Duration { return t.attachTime }

// Mode returns the attach mode in use.
func (t *Tracer) Mode() Mode { return t.mode }

// Hooks returns the hooks attached, e.g. "kmem:kmalloc" or "kprobe:kfree".
func (t *Tracer) Hooks() []string { return append([]string(nil), t.hooks...) }

// Notes returns what the attach skipped or chose, for the user and the profile.
func (t *Tracer) Notes() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.notes...)
}

// BulkFreesHooked reports whether kmem_cache_free_bulk is hooked, so that
// no slab free path goes unseen.
func (t *Tracer) BulkFreesHooked() bool { return t.bulkHooked }

// Choice says which attach mode is in use and why: for auto, that it is the
// cheapest that works here, and whether it sees every slab free path.
func (t *Tracer) Choice() string {
	var b strings.Builder
	if t.cfg.Mode == ModeAuto {
		fmt.Fprintf(&b, "auto chose %s, the cheapest mode that works on this kernel", t.mode)
	} else {
		fmt.Fprintf(&b, "attach %s", t.mode)
	}
	if t.cfg.has(tracer.KindSlab) {
		switch {
		case t.bulkHooked:
			b.WriteString("; every slab free path is hooked (")
			var extra []string
			for _, h := range t.hooks {
				for _, f := range untracedFrees {
					if strings.HasSuffix(h, ":"+f.fn) {
						extra = append(extra, f.fn+" by "+strings.TrimSuffix(h, ":"+f.fn))
					}
				}
			}
			b.WriteString(strings.Join(extra, ", ") + ")")
		default:
			b.WriteString("; frees through kmem_cache_free_bulk and kfree_rcu are not all seen (see the note), caches they affect are marked \"frees untraced\"")
		}
	}
	return b.String()
}

// Follow adds a process to the followed tree (Config.Follow): from now on
// its allocations and those of every process it forks are traced.
func (t *Tracer) Follow(pid uint32) error {
	if !t.cfg.Follow {
		return errors.New("the tracer was not opened to follow a process tree")
	}
	if err := t.maps.Tree.Put(pid, uint8(1)); err != nil {
		return fmt.Errorf("following process %d: %w", pid, err)
	}
	return nil
}

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

// Stop is Detach: the tracer as a tracer.Source.
func (t *Tracer) Stop() error { return t.Detach() }

// Detach stops tracing: it closes every link so no program runs any more,
// while the maps stay readable for Snapshot. It is safe to call twice.
func (t *Tracer) Detach() error {
	t.mu.Lock()
	t.detached = true
	var errs []error
	t.readKprobeDrops()
	// Allocation hooks first (they were attached last): what is freed
	// until the free hooks go is still seen to be freed.
	for i := len(t.links) - 1; i >= 0; i-- {
		if err := t.links[i].Close(); err != nil {
			errs = append(errs, err)
		}
	}
	t.links, t.linkKinds = nil, nil
	t.mu.Unlock()
	// The clock goroutine takes mu (armBackups): stopped outside it.
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

// readKprobeDrops adds to kprobeMissed what the kernel reports its
// kprobes dropped, while they are still attached: the kretprobes made
// through tracefs from kprobe_profile (every kernel), the others from
// their link's info (Linux 6.7+). An allocator function's entry kprobe
// shares its address with the function's kretprobe, whose count already
// holds the hits dropped there: it is not counted twice. Called with mu
// held.
func (t *Tracer) readKprobeDrops() {
	viaTracefs := false
	for i, l := range t.links {
		k := t.linkKinds[i]
		if k.tracefs {
			viaTracefs = true
			continue
		}
		if k.paired || k.how != attachKprobe && k.how != attachKretprobe {
			continue
		}
		if info, err := l.Info(); err == nil {
			if pe := info.PerfEvent(); pe != nil {
				if kp := pe.Kprobe(); kp != nil {
					t.kprobeMissed += kp.Missed
				}
			}
		}
	}
	if !viaTracefs {
		return
	}
	n, _, err := readKprobeMisses(kprobeGroupPrefix())
	if err != nil {
		t.notes = append(t.notes, "the kernel's count of the kretprobes' dropped calls could not be read ("+err.Error()+"): kprobe_missed may be short")
		return
	}
	t.kprobeMissed += n
}

// Close detaches the programs and frees every kernel object of the tracer.
func (t *Tracer) Close() error {
	err := t.Detach()
	if t.coll != nil {
		t.coll.Close()
		t.maps.Close()
		t.coll = nil
	}
	if t.cgroupFD != nil {
		t.cgroupFD.Close()
		t.cgroupFD = nil
	}
	return err
}

// Stats reads the kernel-side counters.
func (t *Tracer) Stats() (Stats, error) {
	c, err := t.readCounters()
	if err != nil {
		return Stats{}, err
	}
	s := Stats{Live: true}
	for i := 0; i < nrHooks; i++ {
		s.Events += c[i]
	}
	if c[cTracked] > c[cFreed]+c[cAllocTracked] {
		s.Outstanding = c[cTracked] - c[cFreed] - c[cAllocTracked]
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
	m := t.maps.Counters
	var vals []uint64
	for i := uint32(0); i < uint32(nrCounters); i++ {
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

// registerCaches registers every slab cache for count mode, whose frees
// that read their cache from the object count only for registered caches.
func (t *Tracer) registerCaches() error {
	prog := t.coll.Programs["register_caches"]
	if prog == nil {
		return errors.New("register_caches was not loaded")
	}
	if _, err := prog.Run(&ebpf.RunOptions{Context: []uint64{0}}); err != nil {
		return fmt.Errorf("listing the slab caches: %w (frees of a cache count from its first allocation seen)", err)
	}
	var n uint64
	if err := t.vars.ProbeResult.Get(&n); err != nil {
		return err
	}
	if n == 0 {
		return errors.New("the list of slab caches could not be walked: frees of a cache count from its first allocation seen")
	}
	return nil
}

// removeMemlock lifts RLIMIT_MEMLOCK, which BPF maps count against on
// kernels before 5.11 (later ones charge the memory cgroup). It is done here,
// when BPF is about to be used, rather than by cilium/ebpf's rlimit package,
// whose init probes the kernel with a bpf() call in every kmemprof command,
// even version. Where the limit cannot be lifted (no CAP_SYS_RESOURCE) it is
// raised as far as allowed: 5.11+ kernels do not need it, and older ones
// say so when a map fails to load (loadError names MEMLOCK).
func removeMemlock() error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		return fmt.Errorf("reading RLIMIT_MEMLOCK: %w", err)
	}
	if lim.Cur == unix.RLIM_INFINITY {
		return nil
	}
	if unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}) == nil {
		return nil
	}
	if lim.Cur < lim.Max {
		_ = unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: lim.Max, Max: lim.Max})
	}
	return nil
}

// readOptional is a file's content, or "" when it cannot be read.
func readOptional(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(b)
}

// lockdownMode is the kernel lockdown mode ("none", "integrity",
// "confidentiality") from securityfs's lockdown file ("none integrity
// [confidentiality]"), or where securityfs is not mounted from the kernel
// command line's lockdown=; "" when neither says.
func lockdownMode(securityfs, cmdline string) string {
	if i := strings.IndexByte(securityfs, '['); i >= 0 {
		if j := strings.IndexByte(securityfs[i:], ']'); j > 0 {
			return securityfs[i+1 : i+j]
		}
	}
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, "lockdown="); ok {
			return v
		}
	}
	return ""
}

// lockdownRefusal explains why a kernel in lockdown mode refuses
// kmemprof's programs; "" for a mode that does not.
func lockdownRefusal(mode string) string {
	if mode != "confidentiality" {
		return ""
	}
	return "the kernel is in lockdown=confidentiality mode, which forbids BPF programs to read kernel memory " +
		"(bpf_probe_read_kernel) and hides tracefs: every kmemprof attach mode needs them. " +
		"Lockdown=integrity, what Secure Boot turns on, allows them: boot without lockdown=confidentiality " +
		"(or with lockdown=integrity) to trace kernel memory on this machine"
}
