package bpf

// Hook and counter indexes: enum hook and enum counter of kmemprof.h,
// through the bindings bpf2go generates from the object's BTF.
const (
	hookCacheAlloc      = int(kmemprofHookHOOK_CACHE_ALLOC)
	hookCacheFree       = int(kmemprofHookHOOK_CACHE_FREE)
	hookKmalloc         = int(kmemprofHookHOOK_KMALLOC)
	hookKfree           = int(kmemprofHookHOOK_KFREE)
	hookPageAlloc       = int(kmemprofHookHOOK_PAGE_ALLOC)
	hookPageFree        = int(kmemprofHookHOOK_PAGE_FREE)
	hookPageFreeBatched = int(kmemprofHookHOOK_PAGE_FREE_BATCHED)
	hookPercpuAlloc     = int(kmemprofHookHOOK_PERCPU_ALLOC)
	hookPercpuFree      = int(kmemprofHookHOOK_PERCPU_FREE)
	hookFreeBulk        = int(kmemprofHookHOOK_FREE_BULK)
	hookFreeRCU         = int(kmemprofHookHOOK_FREE_RCU)
	nrHooks             = int(kmemprofHookNR_HOOKS)
)

const (
	// Counters the code refers to; the summary and the profile list them all
	// (counterInfo).
	cTracked         = int(kmemprofCounterC_TRACKED)
	cFreed           = int(kmemprofCounterC_FREED)
	cAllocTracked    = int(kmemprofCounterC_ALLOC_TRACKED)
	cReturnMissed    = int(kmemprofCounterC_RETURN_MISSED)
	cCacheUnresolved = int(kmemprofCounterC_CACHE_UNRESOLVED)
	cNested          = int(kmemprofCounterC_NESTED)
	cBulkTruncated   = int(kmemprofCounterC_BULK_TRUNCATED)
	cReturnNoEntry   = int(kmemprofCounterC_RETURN_NO_ENTRY)
	cReturnAtAttach  = int(kmemprofCounterC_RETURN_AT_ATTACH)
	cPageSiteUnknown = int(kmemprofCounterC_PAGE_SITE_UNKNOWN)
	cRescued         = int(kmemprofCounterC_RESCUED)
	cTreeFull        = int(kmemprofCounterC_TREE_FULL)
	nrCounters       = int(kmemprofCounterNR_COUNTERS)
)

// hookNames are the names of the hooks, by hook index: the tracepoint each
// one stands for (in kprobe and fentry modes, the allocator functions that
// fire it), and the bulk free function.
var hookNames = [nrHooks]string{
	hookCacheAlloc:      "kmem:kmem_cache_alloc",
	hookCacheFree:       "kmem:kmem_cache_free",
	hookKmalloc:         "kmem:kmalloc",
	hookKfree:           "kmem:kfree",
	hookPageAlloc:       "kmem:mm_page_alloc",
	hookPageFree:        "kmem:mm_page_free",
	hookPageFreeBatched: "kmem:mm_page_free_batched",
	hookPercpuAlloc:     "percpu:percpu_alloc_percpu",
	hookPercpuFree:      "percpu:percpu_free_percpu",
	hookFreeBulk:        "kmem_cache_free_bulk",
	hookFreeRCU:         "kvfree_call_rcu",
}

// counterInfo describes each non-hook counter for the summary and the
// profile, keyed by the constants bpf2go generates from enum counter of
// kmemprof.h: adding a counter is its enum entry and its line here
// (TestEveryCounterDescribed fails without the line).
var counterInfo = [nrCounters]struct {
	name string
	help string
	loss bool
}{
	kmemprofCounterC_TRACKED:               {"tracked", "allocations recorded in the outstanding map", false},
	kmemprofCounterC_FREED:                 {"freed", "recorded allocations freed during the capture", false},
	kmemprofCounterC_FREE_UNTRACKED_SLAB:   {"free_untracked_slab", "slab frees of objects not tracked (most were allocated before the capture)", false},
	kmemprofCounterC_FREE_UNTRACKED_PAGE:   {"free_untracked_page", "page frees of pages not tracked (most were allocated before the capture)", false},
	kmemprofCounterC_FREE_UNTRACKED_PERCPU: {"free_untracked_percpu", "percpu frees not tracked (most were allocated before the capture)", false},
	kmemprofCounterC_ALLOC_TRACKED:         {"alloc_at_tracked_ptr", "allocations at a pointer still tracked: its free was missed (a free path without a hook), the old record was replaced", true},
	kmemprofCounterC_MAP_FULL:              {"outstanding_map_full", "allocations not recorded because their bucket of the outstanding table was full (raise --max-outstanding)", true},
	kmemprofCounterC_STACK_COLLISION:       {"stack_lost_collision", "stacks lost to a stack-map bucket collision with the second-chance store full (allocation kept under a placeholder frame)", true},
	kmemprofCounterC_STACK_FULL:            {"stack_lost_map_full", "stacks lost because the stack map was full", true},
	kmemprofCounterC_STACK_FAULT:           {"stack_lost_walk", "stack walks that failed in the kernel", true},
	kmemprofCounterC_TOTALS_FULL:           {"totals_map_full", "allocations missing from alloc_objects/alloc_space because the totals map was full", true},
	kmemprofCounterC_CACHES_FULL:           {"cache_map_full", "slab caches whose name could not be recorded", true},
	kmemprofCounterC_FILTERED:              {"filtered", "allocations skipped by --pid, --follow, --cgroup, --cache or --min-size", false},
	kmemprofCounterC_SELF:                  {"self", "allocations by kmemprof itself, skipped", false},
	kmemprofCounterC_NULL:                  {"failed_allocs", "failed allocations (NULL result), skipped", false},
	kmemprofCounterC_RETURN_MISSED:         {"kretprobe_missed", "allocator calls whose return the kretprobe never saw (kprobe mode): not recorded", true},
	kmemprofCounterC_SAMPLED_OUT:           {"sampled_out", "allocations not recorded by --sample (the profile's values are scaled for them)", false},
	kmemprofCounterC_WALKED:                {"stacks_walked", "kernel stacks walked", false},
	kmemprofCounterC_FREE_NULL:             {"free_null", "frees of NULL (no-ops)", false},
	kmemprofCounterC_STACK_RECOVERED:       {"stack_collision_recovered", "stacks that collided in the stack map and were kept in the second-chance store", false},
	kmemprofCounterC_SITES_CHURN:           {"sites_churn", "hot call sites cooled because they freed nearly all they allocated (adaptive mode)", false},
	kmemprofCounterC_HOT_SITES:             {"hot_sites", "call sites whose stacks were walked because enough of their allocations were outstanding (adaptive mode)", false},
	kmemprofCounterC_CACHE_UNRESOLVED:      {"cache_unresolved", "slab allocations whose cache could not be read from the object (shown as [unknown cache])", true},
	kmemprofCounterC_NESTED:                {"nested_allocs", "allocations the kernel reported twice, counted once: an allocator function called by another hooked one (kprobe and fentry modes), a large kmalloc whose tracepoint fires twice (6.10+)", false},
	kmemprofCounterC_BULK_TRUNCATED:        {"bulk_free_truncated", "objects of kmem_cache_free_bulk calls beyond the first 512, not looked up (they stay outstanding)", true},
	kmemprofCounterC_RETURN_NO_ENTRY:       {"kretprobe_no_entry", "allocator returns seen without their entry (kprobe mode): not recorded", true},
	kmemprofCounterC_RESCUED:               {"nested_rescued", "events nested in their own hook's program (an interrupt's frees during a free), which the kernel does not run it for: handled by the hook's backup program", false},
	kmemprofCounterC_TREE_FULL:             {"follow_map_full", "--follow: processes forked in the followed tree that could not be added to it (65,536 at most): their allocations were filtered out", true},
	kmemprofCounterC_CGROUP_NAMES_FULL:     {"cgroup_names_full", "cgroups made during the capture whose path could not be kept (65,536 between snapshots; 2,048 before Linux 6.1): if removed, their objects are labelled memcg=id:N", true},
	kmemprofCounterC_COUNTED_ALLOCS:        {"counted_allocs", "count mode (top): slab allocations counted for their cache, with no record", false},
	kmemprofCounterC_COUNTED_FREES:         {"counted_frees", "count mode (top): slab frees counted for their cache, whenever the object was allocated", false},
	kmemprofCounterC_FREE_UNRESOLVED:       {"free_cache_unresolved", "count mode (top): slab frees whose cache was not found (read from the object, not yet seen allocating): counted in no row", true},
	kmemprofCounterC_RETURN_AT_ATTACH:      {"kretprobe_no_entry_at_attach", "allocator returns without their entry while the kprobes were being attached (calls begun before the capture): not recorded", false},
	kmemprofCounterC_PAGE_SITE_UNKNOWN:     {"page_site_unknown", "adaptive mode: page allocations whose caller was not found in the stack's first 16 frames: they share one call site", false},
}
