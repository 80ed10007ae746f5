package bpf

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kmemprof/kmemprof/tracer"
)

// Stats is a cheap live view of the kernel-side counters (Tracer.Stats).
type Stats = tracer.Stats

// ErrNotSupported is returned (wrapped) by Open on platforms without eBPF.
var ErrNotSupported = errors.New("eBPF tracing is not supported on this platform")

// ErrAttach is returned (wrapped) when no program could be attached in the
// requested mode; the message names the kernel support that is missing.
var ErrAttach = errors.New("cannot attach to the kernel's allocation hooks")

// Mode is how the BPF programs attach to the kernel.
type Mode string

// Attach modes, cheapest first. ModeAuto tries them in this order.
const (
	ModeAuto       Mode = "auto"
	ModeRawTP      Mode = "raw_tp"
	ModeTPBTF      Mode = "tp_btf"
	ModeTracepoint Mode = "tracepoint"
	ModeFentry     Mode = "fentry"
	ModeKprobe     Mode = "kprobe"
)

// AutoOrder is the order in which ModeAuto tries the attach modes: the
// cheapest first. The tracepoint modes hook the frees that have no
// tracepoint (kmem_cache_free_bulk) with fentry or a kprobe where the kernel
// allows, so they are complete wherever fentry and kprobe modes would be.
var AutoOrder = []Mode{ModeRawTP, ModeTPBTF, ModeTracepoint, ModeFentry, ModeKprobe}

// ParseMode parses an --attach value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.TrimSpace(s)); m {
	case ModeAuto, ModeRawTP, ModeTPBTF, ModeTracepoint, ModeFentry, ModeKprobe:
		return m, nil
	}
	return "", fmt.Errorf("unknown attach mode %q (want auto, raw_tp, tp_btf, tracepoint, fentry or kprobe)", s)
}

// ParseKinds parses a --kinds value: a comma-separated list of slab, page and
// percpu. "slab" covers kmem_cache and kmalloc allocations.
func ParseKinds(s string) ([]tracer.Kind, error) {
	var kinds []tracer.Kind
	seen := map[tracer.Kind]bool{}
	for _, f := range strings.Split(s, ",") {
		var k tracer.Kind
		switch strings.TrimSpace(f) {
		case "slab":
			k = tracer.KindSlab
		case "page", "pages":
			k = tracer.KindPage
		case "percpu":
			k = tracer.KindPercpu
		case "":
			continue
		default:
			return nil, fmt.Errorf("unknown allocation kind %q (want a comma-separated list of slab, page, percpu)", strings.TrimSpace(f))
		}
		if !seen[k] {
			seen[k] = true
			kinds = append(kinds, k)
		}
	}
	if len(kinds) == 0 {
		return nil, fmt.Errorf("no allocation kind given (want a comma-separated list of slab, page, percpu)")
	}
	return kinds, nil
}

// Tracking is how much of each allocation kmemprof records.
type Tracking string

// Tracking modes.
const (
	// TrackFull records every allocation with its full kernel stack.
	TrackFull Tracking = "full"
	// TrackAdaptive records every allocation with its call site, and walks
	// full stacks only at call sites whose outstanding count has reached
	// Config.HotThreshold: steady churn costs no stack walk.
	TrackAdaptive Tracking = "adaptive"
	// TrackSample records one allocation in Config.SampleEvery, with its full
	// stack; the profile scales values by the rate.
	TrackSample Tracking = "sample"
	// TrackCount records no slab allocation: it counts allocations and frees
	// per cache (CacheStats), a free whenever its object was allocated, and
	// walks no stack; snapshots hold only large kmallocs. kmemprof top's
	// mode; it implies CountCaches.
	TrackCount Tracking = "count"
)

// ParseTracking parses a --mode value.
func ParseTracking(s string) (Tracking, error) {
	switch m := Tracking(strings.TrimSpace(s)); m {
	case TrackFull, TrackAdaptive, TrackSample:
		return m, nil
	}
	return "", fmt.Errorf("unknown mode %q (want adaptive, full or sample)", s)
}

// MaxCacheFilters is how many --cache names the kernel-side filter holds.
const MaxCacheFilters = 4

// MaxStackDepth is the deepest kernel stack the kernel can walk for BPF
// (PERF_MAX_STACK_DEPTH).
const MaxStackDepth = 127

// Config says what to trace. The zero value of every field means "default".
type Config struct {
	// Mode is the attach mode; "" or ModeAuto picks the first that works.
	Mode Mode
	// Kinds are the allocators to trace; nil means slab only.
	Kinds []tracer.Kind
	// PID, if non-zero, traces only allocations by this process (thread group).
	PID uint32
	// LazyBackups attaches a free hook's backup program only once the kernel
	// reports a free it did not run the hook's primary for (a free in an
	// interrupt nested in the free program, Linux 6.1+), instead of from the
	// start. A second program on a tracepoint costs every event a second
	// dispatch; lazily, workloads whose frees never nest do not pay it, but
	// the frees of the first nested interrupt are lost (counted in
	// prog_recursion_misses) and their objects look outstanding until their
	// memory is reused.
	LazyBackups bool
	// Follow traces only the process tree of the processes given to
	// Tracer.Follow, children included as they are forked (in the kernel).
	Follow bool
	// CgroupPath, if set, traces only allocations by tasks in this cgroup v2
	// directory or below it (an absolute path under the cgroup2 mount).
	CgroupPath string
	// MemcgID, if not 0, traces only allocations charged to this memory
	// cgroup or one below it: the id (inode number) of its directory in the
	// hierarchy the memory controller is on, cgroup v1 or v2
	// (host.MemcgHierarchy.FilterID finds it from a path).
	MemcgID uint64
	// MemcgPath is how MemcgID was given, for the profile's filters.
	MemcgPath string
	// MemcgHierarchy is the id of the memory controller's cgroup v1
	// hierarchy (host.FindMemcgHierarchy), 0 when it is on cgroup v2: the
	// cgroups made during the capture are recorded (Tracer.CgroupsMade) for
	// it and for cgroup v2.
	MemcgHierarchy uint32
	// Caches, if set, traces only these slab caches (at most MaxCacheFilters
	// names, e.g. "dentry", "kmalloc-64"). kmalloc names match every kmalloc
	// variant of that size class (kmalloc-cg-64, kmalloc-rcl-64...).
	Caches []string
	// MinSize, if non-zero, traces only allocations of at least this many
	// allocated bytes.
	MinSize uint64
	// StackDepth is the deepest kernel stack recorded (default 64, at most
	// MaxStackDepth).
	StackDepth int
	// Tracking is how much of each allocation is recorded (default
	// TrackAdaptive).
	Tracking Tracking
	// SampleEvery is the sampling rate of TrackSample: one allocation in
	// SampleEvery is recorded (default 64).
	SampleEvery int
	// HotThreshold is, for TrackAdaptive, how many allocations of a call site
	// must be outstanding before its stacks are walked (default 64).
	HotThreshold int
	// CountCaches counts allocations and frees per slab cache (CacheStats),
	// for kmemprof top; it costs a per-CPU map update per event.
	CountCaches bool
	// MaxOutstanding sizes the outstanding table (default 1<<20 allocations,
	// in twice as many slots); an allocation whose bucket is full is counted
	// as outstanding_map_full.
	MaxOutstanding int
	// MaxStacks is the capacity of the stack map (default 1<<16).
	MaxStacks int
	// SelfPID is excluded from tracing: kmemprof's own map reads allocate.
	// 0 means the current process.
	SelfPID uint32
	// Continuous is for captures that run for days and are read every
	// interval (the agent): each Snapshot's totals (alloc_objects,
	// alloc_space) count what was allocated since the previous Snapshot,
	// and Snapshot trims the kernel maps, deleting the totals and the stacks
	// nothing has used for an interval (counters totals_trimmed,
	// stacks_trimmed), so that they do not fill whatever the uptime.
	Continuous bool
	// BulkFrees says how the frees that have no tracepoint
	// (kmem_cache_free_bulk) are hooked in the tracepoint modes: BulkAuto
	// (the default: fentry, else a kprobe, else not at all, with a note) or
	// BulkOff.
	BulkFrees BulkHook
}

// BulkHook is how the tracepoint modes hook kmem_cache_free_bulk.
type BulkHook string

// Bulk free hooking.
const (
	BulkAuto BulkHook = ""
	BulkOff  BulkHook = "off"
)

func (c *Config) setDefaults() error {
	if c.Mode == "" {
		c.Mode = ModeAuto
	}
	if len(c.Kinds) == 0 {
		c.Kinds = []tracer.Kind{tracer.KindSlab}
	}
	if c.StackDepth == 0 {
		c.StackDepth = 64
	}
	if c.StackDepth < 1 || c.StackDepth > MaxStackDepth {
		return fmt.Errorf("stack depth %d out of range (1 to %d)", c.StackDepth, MaxStackDepth)
	}
	switch c.Tracking {
	case "":
		c.Tracking = TrackAdaptive
	case TrackFull, TrackAdaptive, TrackSample:
	case TrackCount:
		c.CountCaches = true
	default:
		return fmt.Errorf("unknown tracking mode %q", c.Tracking)
	}
	if c.SampleEvery == 0 {
		c.SampleEvery = 64
	}
	if c.SampleEvery < 1 {
		return fmt.Errorf("sample rate %d: want 1 or more", c.SampleEvery)
	}
	if c.HotThreshold == 0 {
		c.HotThreshold = 64
	}
	if c.Tracking == TrackCount {
		// Only large kmallocs are recorded, and no stack is walked.
		if c.MaxOutstanding == 0 {
			c.MaxOutstanding = 1 << 16
		}
		if c.MaxStacks == 0 {
			c.MaxStacks = 1 << 8
		}
	}
	if c.MaxOutstanding == 0 {
		c.MaxOutstanding = 1 << 20
	}
	if c.MaxStacks == 0 {
		c.MaxStacks = 1 << 16
	}
	if len(c.Caches) > MaxCacheFilters {
		return fmt.Errorf("too many caches to filter (%d, at most %d)", len(c.Caches), MaxCacheFilters)
	}
	for _, name := range c.Caches {
		if len(name) == 0 || len(name) >= 32 {
			return fmt.Errorf("cache name %q: want 1 to 31 characters", name)
		}
	}
	return nil
}

func (c *Config) has(k tracer.Kind) bool {
	for _, x := range c.Kinds {
		if x == k {
			return true
		}
	}
	return false
}
