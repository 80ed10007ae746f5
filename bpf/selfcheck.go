package bpf

import "time"

// TrackedCounts is what the outstanding table held at one instant: the
// tracked figures the self-check compares with the kernel's counts.
type TrackedCounts struct {
	// Taken is when the table was read.
	Taken time.Time
	// Objects counts the outstanding slab objects per cache, named as the
	// profile names them: a kmem_cache by its name, a kmalloc by its size
	// class (kmalloc-64, kmalloc-cg-64, ...). Records, not scaled by
	// sampling. Large kmallocs (served by the page allocator) are in
	// PageBytes instead, and objects of no known cache are left out.
	Objects map[string]uint64
	// Bytes is the allocator's bytes of Objects, per cache.
	Bytes map[string]uint64
	// PageBytes sums the outstanding page allocations (--kinds page) and
	// large kmallocs: memory taken from the page allocator.
	PageBytes uint64
	// Unnamed counts the slab records of no known cache ([unknown cache]).
	Unnamed uint64
	// BulkAllocs counts, per cache, the objects kmem_cache_alloc_bulk
	// allocated since the start: it has no tracepoint, and its objects are
	// counted, not tracked. BulkHooked says it is hooked; where it is not,
	// the growth of a cache with nothing tracked cannot be told from
	// allocations missed.
	BulkAllocs map[string]uint64
	BulkHooked bool
	// RecentRCU counts, per cache, the tracked objects handed to kfree_rcu
	// (freed, for kmemprof) in the last 10 seconds: the kernel frees them
	// in batches seconds later, and may still count them as in use.
	RecentRCU map[string]uint64
}
