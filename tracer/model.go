// Package tracer holds kmemprof's platform-neutral model of kernel allocations:
// outstanding-allocation records, per-stack totals, snapshots of a capture, and
// the pprof profile and terminal summary built from them. It knows nothing of
// eBPF or ETW; the bpf and etw packages fill a Snapshot, and cmd/kmemprof turns
// it into output.
package tracer

import (
	"fmt"
	"time"
)

// Kind is the allocator an allocation came from.
type Kind uint8

const (
	// KindSlab is a slab object: kmem_cache_alloc or kmalloc on Linux.
	KindSlab Kind = iota + 1
	// KindPage is a page-allocator allocation (one record per 2^order block).
	KindPage
	// KindPercpu is a per-CPU allocation.
	KindPercpu
	// KindPool is a Windows pool allocation.
	KindPool
)

// String returns the label value used for the kind ("slab", "page", ...).
func (k Kind) String() string {
	switch k {
	case KindSlab:
		return "slab"
	case KindPage:
		return "page"
	case KindPercpu:
		return "percpu"
	case KindPool:
		return "pool"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// StackID names a stack in Snapshot.Stacks. Negative values mean the stack walk
// failed for that allocation; the value is one of the StackLost* constants and
// the allocation is still counted, under a placeholder frame that names the cause.
type StackID int64

// Causes of a missing stack. They are negative so that they never collide with
// real stack ids.
const (
	// StackLostCollision: the stack map bucket held another stack (-EEXIST).
	StackLostCollision StackID = -1
	// StackLostFull: the stack map had no room (-ENOMEM).
	StackLostFull StackID = -2
	// StackLostWalk: the kernel could not walk the stack (-EFAULT and others).
	StackLostWalk StackID = -3
	// StackLostNotFound: the stack id was recorded but is gone from the stack map.
	StackLostNotFound StackID = -4
	// StackLostNone: the event carried no stack (e.g. ETW stack never arrived).
	StackLostNone StackID = -5
)

// NotWalkedName is the root frame of a partial stack (Snapshot.Partial).
const NotWalkedName = "[stack not walked: call site only]"

// StackLostName returns the placeholder frame name for a failed stack id, e.g.
// "[stack lost: bucket collision]". It returns "" for a real stack id.
func StackLostName(id StackID) string {
	switch id {
	case StackLostCollision:
		return "[stack lost: bucket collision]"
	case StackLostFull:
		return "[stack lost: stack map full]"
	case StackLostWalk:
		return "[stack lost: walk failed]"
	case StackLostNotFound:
		return "[stack lost: evicted from stack map]"
	case StackLostNone:
		return "[stack lost: no stack event]"
	}
	if id < 0 {
		return fmt.Sprintf("[stack lost: cause %d]", int64(id))
	}
	return ""
}

// Key identifies a group of allocations that become one pprof sample: the
// same stack and the same labels.
type Key struct {
	// Fields are ordered to keep the struct small: a snapshot may hold a
	// million records.
	Stack    StackID
	CgroupID uint64 // cgroup v2 id of the allocating task (0 when not known)
	// MemcgID is the id of the memory cgroup the allocation is charged to
	// (the task's, or the one the kernel made active), in the hierarchy the
	// memory controller is on, v1 or v2; 0 when not known. Snapshot.Memcgs
	// names it.
	MemcgID uint64
	Cache   string // slab cache or pool tag ("" when not known)
	Comm    string // process name of the allocating task
	Pool    string // Windows pool type ("NonPaged", "Paged", ...); "" on Linux
	PID     uint32 // process (thread-group) id of the allocating task
	// GFP, Order and Migrate describe page allocations (KindPage; zero for
	// other kinds): the GFP flags, the order (2^order pages) and the migrate
	// type plus one (0: unknown).
	GFP     uint32
	Kind    Kind
	Order   uint8
	Migrate uint8
}

// Record is one outstanding (allocated, not yet freed) allocation.
type Record struct {
	Key
	Addr       uint64 // pointer (or page/pfn) that identifies the allocation
	BytesReq   uint64 // bytes the caller asked for
	BytesAlloc uint64 // bytes the allocator handed out
	Time       int64  // when it was allocated: wall clock, Unix nanoseconds
	Accounted  bool   // charged to a memory cgroup
}

// Total counts every allocation made during the capture for one Key, freed
// or not. It is the source of the alloc_objects and alloc_space sample values.
type Total struct {
	Key
	Count uint64
	Bytes uint64
}

// Counter is one capture statistic, typically a loss counter. Counters are
// printed in the terminal summary and written as profile comments.
type Counter struct {
	Name  string // short machine-friendly name, e.g. "stack_collision"
	Value uint64
	Help  string // what it means for the user, one line
	Loss  bool   // true when a non-zero value means data was lost or is wrong
	// Gauge says Value is a figure of the moment the snapshot was taken
	// (the self-check's), not a count since the capture started.
	Gauge bool
}

// Meta describes the capture a snapshot came from.
type Meta struct {
	Platform   string        // "linux" or "windows"
	Kernel     string        // kernel version string
	AttachMode string        // e.g. "raw_tp", "tp_btf", "tracepoint", "kprobe", "etw"
	Hooks      []string      // what was hooked, e.g. "kmem:kmalloc"
	Start      time.Time     // wall clock when tracing began
	Duration   time.Duration // how long tracing ran
	MinAge     time.Duration // records younger than this at the end were left out
	Filters    []string      // human-readable filters in force, e.g. "pid=42"
	Counters   []Counter     // statistics and losses, in display order
	Comments   []string      // further free-form comments for the profile
}

// Snapshot is the state of a capture at one moment: the outstanding
// allocations, the totals since the start, and the stacks both refer to.
type Snapshot struct {
	Meta Meta
	// Platform says how to present the backend's frames and labels.
	Platform Platform
	Records  []Record
	Totals   []Total
	// Stacks maps a stack id to raw kernel addresses, leaf (innermost) first.
	Stacks map[StackID][]uint64
	// Partial marks the stacks that hold only a call site (the return
	// address into the allocator's caller) because the stack was not walked:
	// they are shown as that function under a "[stack not walked]" root.
	Partial map[StackID]bool
	// Leaf gives, for stacks walked below a hooked allocator function
	// (kprobe and fentry modes), that function's address: it becomes the
	// stack's leaf frame where the walk does not show it (a kretprobe or
	// fexit program runs after the function returned).
	Leaf map[StackID]uint64
	// FrameSymbols gives, for stacks whose addresses meant other code at
	// other times during the capture (a Windows driver loaded over the range
	// of one unloaded before), each frame's symbol as it was when the stack
	// was seen; Aggregate uses them instead of its Symbolizer, which knows
	// only the end's. Frames with a zero Symbol are left to the Symbolizer.
	FrameSymbols map[StackID][]Symbol
	// Reclaimable names the slab caches whose objects the kernel reclaims
	// under memory pressure (SLAB_RECLAIM_ACCOUNT), when the backend knows.
	Reclaimable map[string]bool
	// MergedCaches gives, for a slab cache the allocator merged others into,
	// their names (and for each of those, the others): objects of all of
	// them carry one name, which users may not recognise.
	MergedCaches map[string][]string
	// UntracedFrees counts, per slab cache, the allocations found at the
	// address of a tracked one: objects freed through a path without a hook
	// (kmem_cache_free_bulk where neither fentry nor kprobes exist). Objects
	// of these caches may show as outstanding although they were freed.
	UntracedFrees map[string]uint64
	// SampleEvery, when above 1, says one allocation in SampleEvery was
	// recorded: every value is scaled by it.
	SampleEvery uint64
	// Memcgs describes the memory cgroups the records and totals point to
	// (Key.MemcgID), when the backend knows them.
	Memcgs map[uint64]Memcg
	// Taken is when the snapshot was read.
	Taken time.Time
	// SelfCheck is the comparison of what was tracked with the kernel's
	// own counts, made while the capture still ran (RunSelfCheck, Apply);
	// nil when none was made.
	SelfCheck *SelfCheck
}

// Frame is one symbolized kernel frame.
type Frame struct {
	Addr     uint64 // the address as walked (a return address except for the leaf)
	Function string // symbol name; "" when the address could not be resolved
	Offset   uint64 // Addr minus the symbol's start
	Module   string // kernel module ("" for the kernel image itself, "bpf" for BPF programs)
}

// Symbol is what a Symbolizer knows of an instruction address.
type Symbol struct {
	// Name is the function; "" when only the image is known (a Windows
	// driver without its PDB): the frame is then named Module+offset.
	Name string
	// Start is the function's address (the image's base when Name is "").
	Start uint64
	// Module is the kernel module or driver image; "" for the kernel
	// itself where the platform does not name it.
	Module string
}

// Symbolizer resolves kernel instruction addresses. Implementations must
// be safe for use by one goroutine at a time and should be fast: the
// profile builder calls Lookup once per distinct address. They look up
// the address they are given: the builder passes a return address minus
// one, so that a call at the end of a function is attributed to it (the
// return-address rule, applied here and only here).
type Symbolizer interface {
	Lookup(pc uint64) (Symbol, bool)
}

// Memcg is a memory cgroup as the snapshot found it.
type Memcg struct {
	// Path is the cgroup's path in the memory controller's hierarchy, such
	// as "/docker/3f4e..." (v1) or "/system.slice/foo.service" (v2); "" when
	// not known (a cgroup removed before the capture started).
	Path string
	// Removed is true when the cgroup was removed (rmdir) while objects
	// charged to it live on: a dead container's memcg, offline or dying.
	Removed bool
}
