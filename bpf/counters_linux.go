package bpf

// Hook and counter indexes: enum hook and enum counter of kmemprof.bpf.c,
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
	cTracked             = int(kmemprofCounterC_TRACKED)
	cFreed               = int(kmemprofCounterC_FREED)
	cFreeUntrackedSlab   = int(kmemprofCounterC_FREE_UNTRACKED_SLAB)
	cFreeUntrackedPage   = int(kmemprofCounterC_FREE_UNTRACKED_PAGE)
	cFreeUntrackedPercpu = int(kmemprofCounterC_FREE_UNTRACKED_PERCPU)
	cAllocTracked        = int(kmemprofCounterC_ALLOC_TRACKED)
	cMapFull             = int(kmemprofCounterC_MAP_FULL)
	cStackCollision      = int(kmemprofCounterC_STACK_COLLISION)
	cStackFull           = int(kmemprofCounterC_STACK_FULL)
	cStackFault          = int(kmemprofCounterC_STACK_FAULT)
	cTotalsFull          = int(kmemprofCounterC_TOTALS_FULL)
	cCachesFull          = int(kmemprofCounterC_CACHES_FULL)
	cFiltered            = int(kmemprofCounterC_FILTERED)
	cSelf                = int(kmemprofCounterC_SELF)
	cNull                = int(kmemprofCounterC_NULL)
	cReturnMissed        = int(kmemprofCounterC_RETURN_MISSED)
	cSampledOut          = int(kmemprofCounterC_SAMPLED_OUT)
	cWalked              = int(kmemprofCounterC_WALKED)
	cHotSites            = int(kmemprofCounterC_HOT_SITES)
	cFreeNull            = int(kmemprofCounterC_FREE_NULL)
	cSitesChurn          = int(kmemprofCounterC_SITES_CHURN)
	cStackRecovered      = int(kmemprofCounterC_STACK_RECOVERED)
	cCacheUnresolved     = int(kmemprofCounterC_CACHE_UNRESOLVED)
	cNested              = int(kmemprofCounterC_NESTED)
	cBulkTruncated       = int(kmemprofCounterC_BULK_TRUNCATED)
	cReturnNoEntry       = int(kmemprofCounterC_RETURN_NO_ENTRY)
	cRescued             = int(kmemprofCounterC_RESCUED)
	cTreeFull            = int(kmemprofCounterC_TREE_FULL)
	cCgroupNamesFull     = int(kmemprofCounterC_CGROUP_NAMES_FULL)
	nrCounters           = int(kmemprofCounterNR_COUNTERS)
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

// counterInfo describes each non-hook counter for the summary and the profile.
var counterInfo = [nrCounters]struct {
	name string
	help string
	loss bool
}{
	cTracked:             {"tracked", "allocations recorded in the outstanding map", false},
	cFreed:               {"freed", "recorded allocations freed during the capture", false},
	cFreeUntrackedSlab:   {"free_untracked_slab", "slab frees of objects not tracked (most were allocated before the capture)", false},
	cFreeUntrackedPage:   {"free_untracked_page", "page frees of pages not tracked (most were allocated before the capture)", false},
	cFreeUntrackedPercpu: {"free_untracked_percpu", "percpu frees not tracked (most were allocated before the capture)", false},
	cAllocTracked:        {"alloc_at_tracked_ptr", "allocations at a pointer still tracked: its free was missed (a free path without a hook), the old record was replaced", true},
	cMapFull:             {"outstanding_map_full", "allocations not recorded because their bucket of the outstanding table was full (raise --max-outstanding)", true},
	cStackCollision:      {"stack_lost_collision", "stacks lost to a stack-map bucket collision with the second-chance store full (allocation kept under a placeholder frame)", true},
	cStackFull:           {"stack_lost_map_full", "stacks lost because the stack map was full", true},
	cStackFault:          {"stack_lost_walk", "stack walks that failed in the kernel", true},
	cTotalsFull:          {"totals_map_full", "allocations missing from alloc_objects/alloc_space because the totals map was full", true},
	cCachesFull:          {"cache_map_full", "slab caches whose name could not be recorded", true},
	cFiltered:            {"filtered", "allocations skipped by --pid, --follow, --cgroup, --cache or --min-size", false},
	cSelf:                {"self", "allocations by kmemprof itself, skipped", false},
	cNull:                {"failed_allocs", "failed allocations (NULL result), skipped", false},
	cReturnMissed:        {"kretprobe_missed", "allocator calls whose return the kretprobe never saw (kprobe mode): not recorded", true},
	cSampledOut:          {"sampled_out", "allocations not recorded by --sample (the profile's values are scaled for them)", false},
	cWalked:              {"stacks_walked", "kernel stacks walked", false},
	cFreeNull:            {"free_null", "frees of NULL (no-ops)", false},
	cStackRecovered:      {"stack_collision_recovered", "stacks that collided in the stack map and were kept in the second-chance store", false},
	cSitesChurn:          {"sites_churn", "hot call sites cooled because they freed nearly all they allocated (adaptive mode)", false},
	cHotSites:            {"hot_sites", "call sites whose stacks were walked because enough of their allocations were outstanding (adaptive mode)", false},
	cCacheUnresolved:     {"cache_unresolved", "slab allocations whose cache could not be read from the object (shown as [unknown cache])", true},
	cNested:              {"nested_allocs", "allocator functions called by another hooked allocator function, counted once (kprobe and fentry modes)", false},
	cBulkTruncated:       {"bulk_free_truncated", "objects of kmem_cache_free_bulk calls beyond the first 512, not looked up (they stay outstanding)", true},
	cReturnNoEntry:       {"kretprobe_no_entry", "allocator returns seen without their entry (kprobe mode): not recorded", true},
	cRescued:             {"nested_rescued", "events nested in their own hook's program (an interrupt's frees during a free), which the kernel does not run it for: handled by the hook's backup program", false},
	cTreeFull:            {"follow_map_full", "--follow: processes forked in the followed tree that could not be added to it (65,536 at most): their allocations were filtered out", true},
	cCgroupNamesFull:     {"cgroup_names_full", "cgroups made during the capture whose path could not be kept (65,536 between snapshots): if removed, their objects are labelled memcg=id:N", true},
}
