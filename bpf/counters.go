package bpf

// Counter indexes, as in enum hook and enum counter of kmemprof.bpf.c.
const (
	hookCacheAlloc = iota
	hookCacheFree
	hookKmalloc
	hookKfree
	hookPageAlloc
	hookPageFree
	hookPageFreeBatched
	hookPercpuAlloc
	hookPercpuFree
	nrHooks
)

const (
	cTracked = nrHooks + iota
	cFreed
	cFreeUntrackedSlab
	cFreeUntrackedPage
	cFreeUntrackedPercpu
	cAllocTracked
	cMapFull
	cStackCollision
	cStackFull
	cStackFault
	cTotalsFull
	cCachesFull
	cFiltered
	cSelf
	cNull
	cKretprobeNoEntry
	cSampledOut
	cWalked
	cHotSites
	cFreeNull
	cSitesChurn
	cStackRecovered
	nrCounters
)

// hookNames are the tracepoint names of the hooks, by hook index.
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
	cAllocTracked:        {"alloc_at_tracked_ptr", "allocations at a pointer still tracked: its free was missed, the old record was replaced", true},
	cMapFull:             {"outstanding_map_full", "allocations not recorded because their bucket of the outstanding table was full (raise --max-outstanding)", true},
	cStackCollision:      {"stack_lost_collision", "stacks lost to a stack-map bucket collision with the second-chance store full (allocation kept under a placeholder frame)", true},
	cStackFull:           {"stack_lost_map_full", "stacks lost because the stack map was full", true},
	cStackFault:          {"stack_lost_walk", "stack walks that failed in the kernel", true},
	cTotalsFull:          {"totals_map_full", "allocations missing from alloc_objects/alloc_space because the totals map was full", true},
	cCachesFull:          {"cache_map_full", "slab caches whose name could not be recorded", true},
	cFiltered:            {"filtered", "allocations skipped by --pid, --cgroup, --cache or --min-size", false},
	cSelf:                {"self", "allocations by kmemprof itself, skipped", false},
	cNull:                {"failed_allocs", "failed allocations (NULL result), skipped", false},
	cKretprobeNoEntry:    {"kretprobe_no_entry", "allocator returns seen without their entry (kprobe mode)", true},
	cSampledOut:          {"sampled_out", "allocations not recorded by --sample (the profile's values are scaled for them)", false},
	cWalked:              {"stacks_walked", "kernel stacks walked", false},
	cFreeNull:            {"free_null", "frees of NULL (no-ops)", false},
	cStackRecovered:      {"stack_collision_recovered", "stacks that collided in the stack map and were kept in the second-chance store", false},
	cSitesChurn:          {"sites_churn", "hot call sites cooled because they freed nearly all they allocated (adaptive mode)", false},
	cHotSites:            {"hot_sites", "call sites whose stacks were walked because enough of their allocations were outstanding (adaptive mode)", false},
}
