/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * kmemprof.h: what kmemprof.bpf.c shares with user space. The Go side reads
 * these enums and structs through the bindings bpf2go generates from the
 * object's BTF (kmemprofCounter, kmemprofAllocInfo, ...): change them here
 * and run `make generate`; adding a counter is one entry in enum counter and
 * one line in counterInfo (bpf/counters_linux.go).
 */
#ifndef KMEMPROF_H
#define KMEMPROF_H

#define TASK_COMM_LEN 16
#define CACHE_NAME_LEN 32
#define MAX_CACHE_FILTERS 4
#define MAX_STACK_DEPTH 127

/* Allocation kinds; they match tracer.Kind. */
enum kind {
	KIND_SLAB = 1,
	KIND_PAGE = 2,
	KIND_PERCPU = 3,
};

/* Hooks, for the per-hook event counters and alloc_info.hook. */
enum hook {
	HOOK_CACHE_ALLOC = 0,
	HOOK_CACHE_FREE,
	HOOK_KMALLOC,
	HOOK_KFREE,
	HOOK_PAGE_ALLOC,
	HOOK_PAGE_FREE,
	HOOK_PAGE_FREE_BATCHED,
	HOOK_PERCPU_ALLOC,
	HOOK_PERCPU_FREE,
	HOOK_FREE_BULK,
	HOOK_FREE_RCU,
	NR_HOOKS,
};

/*
 * Counters: index into the per-CPU counters array. The first NR_HOOKS slots
 * count events per hook. The Go side reads these names from the generated
 * bindings (kmemprofCounter).
 */
enum counter {
	C_TRACKED = NR_HOOKS,	 /* allocations inserted into the outstanding table */
	C_FREED,		 /* tracked allocations deleted by a free */
	C_FREE_UNTRACKED_SLAB,	 /* slab free of a pointer not tracked */
	C_FREE_UNTRACKED_PAGE,	 /* page free of a page not tracked */
	C_FREE_UNTRACKED_PERCPU, /* percpu free of a pointer not tracked */
	C_ALLOC_TRACKED,	 /* allocation at a pointer still tracked: a missed free */
	C_MAP_FULL,		 /* outstanding table full: allocation not tracked */
	C_STACK_COLLISION,	 /* stack walk lost: bucket held another stack (-EEXIST) */
	C_STACK_FULL,		 /* stack walk lost: stack map full (-ENOMEM) */
	C_STACK_FAULT,		 /* stack walk failed (-EFAULT and others) */
	C_TOTALS_FULL,		 /* per-stack totals map full: alloc_* undercounted */
	C_CACHES_FULL,		 /* cache name map full: cache shown as unknown */
	C_FILTERED,		 /* allocations skipped by --pid/--cgroup/--cache/--min-size */
	C_SELF,			 /* allocations by kmemprof itself, skipped */
	C_NULL,			 /* failed allocations (NULL pointer), skipped */
	C_RETURN_MISSED,	 /* kprobe mode: an allocator entry whose return was never seen */
	C_SAMPLED_OUT,		 /* allocations left out by --sample (accounted for by the scale) */
	C_WALKED,		 /* stacks walked */
	C_HOT_SITES,		 /* call sites that became hot (adaptive mode) */
	C_FREE_NULL,		 /* frees of NULL (kfree(NULL) is a no-op) */
	C_SITES_CHURN,		 /* hot sites cooled in the kernel as churn */
	C_STACK_RECOVERED,	 /* stacks that collided in the stack map, kept in stacks2 */
	C_CACHE_UNRESOLVED,	 /* slab allocations whose cache could not be read from the object */
	C_NESTED,		 /* kprobe/fentry: an allocator called by another hooked allocator, counted once */
	C_BULK_TRUNCATED,	 /* objects of a bulk free beyond MAX_BULK, not looked up */
	C_RETURN_NO_ENTRY,	 /* kprobe mode: an allocator return without its entry */
	C_RESCUED,	     /* events handled by a hook's backup program: the kernel did not rerun the busy primary */
	C_TREE_FULL,	     /* --follow: children of the followed tree not added, the tree map being full */
	C_CGROUP_NAMES_FULL, /* cgroups made during the capture whose path could not be kept (cgroup_names full) */
	C_COUNTED_ALLOCS,    /* count mode: slab allocations counted for their cache, not recorded */
	C_COUNTED_FREES,     /* count mode: slab frees counted for their cache */
	C_FREE_UNRESOLVED,   /* count mode: slab frees whose cache was not found: counted in no cache */
	C_RETURN_AT_ATTACH, /* kprobe mode: allocator returns without their entry while attaching (calls begun before) */
	C_PAGE_SITE_UNKNOWN, /* adaptive mode: page allocations whose caller was not found in the stack's first frames */
	NR_COUNTERS,
};

/* Where the stack id field says why there is no stack; see tracer.StackID. */
#define STACK_LOST_COLLISION -1
#define STACK_LOST_FULL -2
#define STACK_LOST_WALK -3
#define STACK_NOT_WALKED -6 /* adaptive mode: the call site was not hot yet */
#define STACK_UNSET -100    /* not decided yet (internal) */

/*
 * Fields an allocation or free hook reads, by index into arg_idx, tp_off and
 * tp_size. F_PTR is the object (for pages: the struct page, or pfn in classic
 * tracepoints).
 */
enum field {
	F_SITE = 0,
	F_PTR,
	F_CACHE,
	F_REQ,
	F_ALLOC,
	F_GFP,
	F_ORDER,
	F_MIGRATE,
	F_NAME,
	F_ACCOUNTED,
	NR_FIELDS,
};

/* One outstanding allocation. */
struct alloc_info {
	__u64 ts;	/* allocation clock (clock_ns) at allocation */
	__u64 cache;	/* cache id, see struct cache_info */
	__u64 cgroup;	/* cgroup v2 id of the allocating task */
	__u64 memcg;	/* id of the memory cgroup charged (task_memcg_id) */
	__u64 site;	/* call site: return address into the allocator's caller (0: unknown) */
	__s32 stack_id; /* >= 0: id in stacks; < 0: STACK_LOST_* or STACK_NOT_WALKED */
	__u32 tgid;
	__u32 bytes_req;
	__u32 bytes_alloc;
	__u32 gfp;
	__u8 kind;
	__u8 hook;
	__u8 accounted;
	__u8 order; /* pages: the order; kprobe and fentry modes: the allocator function's slot + 1 */
	char comm[TASK_COMM_LEN];
};

/*
 * The outstanding table (kernels with BPF atomics): an open-addressing hash
 * table in two BPF arrays, cheaper per event than a BPF hash map (no bucket
 * lock, no free list, no value copy through a helper). Keys are
 * (pointer << 2) | kind, never 0 (0 is an empty slot); a key lives in one of
 * the BUCKET_WAYS slots of its bucket, claimed with compare-and-swap. A full
 * bucket is counted as map_full. Kernels without atomics use table_hash.
 */
#define BUCKET_WAYS 8
struct bucket {
	__u64 key[BUCKET_WAYS];
};

/*
 * Per call site state for the adaptive mode. A site turns hot when its
 * outstanding count reaches arm (hot_threshold while arm is 0). While hot it
 * checks, every CHURN_WINDOW allocations, how many of the window's
 * allocations were freed: a site that frees nearly all it allocates (15/16)
 * is churn with a backlog (RCU-deferred frees, in-flight buffers), not a
 * leak, and cools itself with arm at twice its outstanding count. User space
 * also cools hot sites that stopped growing (sites_linux.go).
 */
struct site_state {
	__s64 allocs;	/* allocations at this site tracked since the start */
	__s64 frees;	/* frees of them; allocs - frees are outstanding */
	__u64 hot;	/* non-zero: walk stacks of this site */
	__s64 arm;	/* outstanding count that turns it hot; 0: hot_threshold */
	__s64 w_allocs; /* allocs and frees when the current window began */
	__s64 w_frees;
};

/*
 * Cache ids. For kmem_cache hooks and wherever the cache is read from the
 * object: the struct kmem_cache pointer (a kernel address). Classic
 * tracepoints whose record names the cache: an FNV-1a hash of the name with
 * the top bit set. kmalloc in tracepoint modes: a small synthetic id,
 * KMALLOC_ID | variant << 16 | bucket size, that user space names
 * ("kmalloc-64", "kmalloc-cg-64", "kmalloc-rcl-64", "dma-kmalloc-64",
 * "kmalloc-large"). Page and percpu allocations have no cache (page
 * allocations carry PAGE_DETAIL ids instead). 0: unknown.
 */
#define KMALLOC_ID (1ULL << 40)
#define KMALLOC_VARIANT_NORMAL 0
#define KMALLOC_VARIANT_CG 1
#define KMALLOC_VARIANT_RCL 2
#define KMALLOC_VARIANT_DMA 3
/* Page allocations' cache id: PAGE_DETAIL | gfp | order << 32 | migratetype << 40. */
#define PAGE_DETAIL (1ULL << 48)

struct cache_info {
	char name[CACHE_NAME_LEN];
	__u32 object_size;
	__u32 size;
	__u32 flags;
	__u8 allowed; /* passes --cache */
	__u8 account; /* SLAB_ACCOUNT set */
	__u8 reclaim; /* SLAB_RECLAIM_ACCOUNT set */
	__u8 pad;
};

struct totals_key {
	__s64 stack_id;
	__u64 cache;
	__u64 cgroup;
	__u64 memcg;
	__u32 tgid;
	__u8 kind;
	__u8 fn; /* kprobe and fentry modes: the allocator function's slot + 1 */
	__u8 pad[2];
	char comm[TASK_COMM_LEN];
};

struct totals_val {
	__u64 count;
	__u64 bytes;
};

/*
 * An allocation on its way into the table. Hooks fill what they know; the
 * stack is walked by record_alloc unless the hook walked it already (kprobe
 * entries walk it where the allocator is the leaf frame).
 */
struct alloc_ev {
	__u64 ptr;
	__u64 site;
	__u64 cache;
	__u64 req;
	__u64 alloc;
	__s64 stack_id;
	__u32 gfp;
	__u8 kind;
	__u8 hook;
	__u8 accounted;
	__u8 order;
	__u8 keep; /* count mode: record it all the same (kmalloc-large, or its cache not found) */
};

/*
 * Allocator function layouts for kprobe and fentry modes, one per slot: the
 * loader matches each allocator function of the running kernel (by its BTF
 * parameter names) to a slot. Argument positions are index + 1, 0 = absent.
 */
#define NR_FN_SLOTS 14
struct fn_layout {
	__u8 cache; /* struct kmem_cache * */
	__u8 size;  /* requested size (kmalloc family) */
	__u8 gfp;
	__u8 nargs; /* fexit: the return value is argument nargs */
	__u8 large; /* served by the page allocator (kmalloc_large and friends) */
	__u8 hook;  /* HOOK_CACHE_ALLOC or HOOK_KMALLOC */
	__u8 pad[2];
};

/* Per-thread state a kprobe saves for its kretprobe, keyed by stack pointer. */
struct kp_args {
	struct alloc_ev ev;
	__u64 size;
	__u8 slot;
	__u8 sampled_out;
	__u8 pad[6];
};

/* The last allocation recorded on this CPU, to recognise nested allocator calls. */
struct last_alloc {
	__u64 key;
	__u64 pid_tgid;
	__u64 ts; /* bpf_ktime_get_ns when recorded */
};

#endif /* KMEMPROF_H */
