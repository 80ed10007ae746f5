// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)

/*
 * maps.h: every map and global variable of the object (but calib_names,
 * beside calib_probe in attach_aux.h), the load-time configuration the loader
 * rewrites before load, the tracking modes (MODE_*) and GFP bits, and the
 * counters (count, count_n) that every later part uses.
 *
 * Depends on: kmemprof.h (the C-Go contract: struct alloc_info, enum hook,
 * enum counter, enum field, the limits). Everything after it depends on it.
 */

/* Sizes are set by the loader before load. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct bucket);
	__uint(max_entries, 1);
} table_keys SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct alloc_info);
	__uint(max_entries, 1);
} table_recs SEC(".maps");

/* The outstanding table on kernels without BPF atomics. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, struct alloc_info);
	__uint(max_entries, 1);
} table_hash SEC(".maps");

#define NR_SITES 65536
/* Allocations between two churn checks of a hot site. */
#define CHURN_WINDOW 256
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct site_state);
	__uint(max_entries, NR_SITES);
	__uint(map_flags, 1024 /* BPF_F_MMAPABLE: user space cools sites in place */);
} sites SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, MAX_STACK_DEPTH * sizeof(__u64));
	__uint(max_entries, 1);
} stacks SEC(".maps");

/*
 * The second-chance stack store. bpf_get_stackid keeps one stack per hash
 * bucket and fails with -EEXIST when another stack holds it; such a stack is
 * walked again into a scratch buffer, hashed here with 64 bits (collisions
 * negligible) and kept in stacks2, so no stack is lost to a collision while
 * stacks2 has room. Its ids follow the stack map's: stack_base + slot.
 */
struct stack_buf {
	__u64 ips[MAX_STACK_DEPTH];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct stack_buf);
	__uint(max_entries, 1);
} stack_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct stack_buf);
	__uint(max_entries, 1);
} stacks2 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, __u32);
	__uint(max_entries, 1);
} stacks2_index SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__type(key, struct totals_key);
	__type(value, struct totals_val);
	__uint(max_entries, 1);
} totals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, struct cache_info);
	__uint(max_entries, 4096);
} caches SEC(".maps");

/*
 * Per cache: allocations found at a pointer still tracked, i.e. objects whose
 * free was never seen. They show which caches are freed through paths that
 * have no hook on this kernel.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, __u64);
	__uint(max_entries, 4096);
} missed_frees SEC(".maps");

/*
 * Per cache: objects allocated through kmem_cache_alloc_bulk, which has no
 * tracepoint and whose objects are not tracked: counted, so that the
 * self-check can tell a cache's growth through it from allocations missed.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, __u64);
	__uint(max_entries, 4096);
} bulk_allocs SEC(".maps");

/*
 * Per cache: tracked objects handed to kfree_rcu/kvfree_rcu (their free, for
 * kmemprof), which the kernel frees seconds later in a batch. User space
 * samples it every second: the self-check allows the objects handed over in
 * the last seconds, which the kernel still counts as in use.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, __u64);
	__uint(max_entries, 4096);
} rcu_frees SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, NR_COUNTERS);
} counters SEC(".maps");

/*
 * kprobe mode: an allocator call's arguments from its entry to its return,
 * keyed by stack pointer. LRU: an entry whose return never came (a
 * kretprobe out of instances: kprobe_missed) gives way to live ones.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u64);
	__type(value, struct kp_args);
	__uint(max_entries, 16384);
} kp_pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct last_alloc);
	__uint(max_entries, 2); /* LAST_NESTED, LAST_LARGE */
} last_allocs SEC(".maps");

/* Nested frees: a per-CPU guard for each free hook's two programs; see guard.h. */
struct free_guard {
	__u32 depth[2]; /* by role: ROLE_PRIMARY, ROLE_BACKUP */
	__u64 slot[4];	/* claimed keys, by nesting level */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct free_guard);
	__uint(max_entries, NR_HOOKS);
} free_guards SEC(".maps");

#define ROLE_PRIMARY 0
#define ROLE_BACKUP 1

struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
	__uint(max_entries, 1);
} cgroup_filter SEC(".maps");

/*
 * --follow: the process tree of a command. Its tgid is put here before it
 * runs; tree_fork adds every child of a member, tree_exit removes a member
 * whose last thread exits (so that a reused pid is not traced).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u8);
	__uint(max_entries, 65536);
} tree SEC(".maps");

/*
 * Paths of the cgroups made during the capture, from cgroup_mkdir, for the
 * v2 hierarchy and the one the memory controller is on: user space cannot
 * name a cgroup removed before it looked (a container that lived for
 * seconds), but the allocations that outlive it keep its id. User space
 * drains the map at every snapshot.
 */
#define CGROUP_PATH_LEN 512
struct cgroup_name_key {
	__u64 id;	 /* kernfs id: the inode number of the cgroup's directory */
	__u32 hierarchy; /* 0: cgroup v2; else the v1 hierarchy's id */
	__u32 pad;
};

struct cgroup_name {
	char path[CGROUP_PATH_LEN]; /* relative to the hierarchy's root: "/docker/3f4e..." */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct cgroup_name_key);
	__type(value, struct cgroup_name);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} cgroup_names SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct cgroup_name);
	__uint(max_entries, 1);
} cgroup_name_buf SEC(".maps");

/* Per-cache allocation and free counts for `kmemprof top` (count_caches). */
struct cache_stat {
	__u64 allocs;
	__u64 frees;
	__u64 bytes; /* bytes allocated; sizes of pointer-keyed caches come from the cache */
	__u64 freed_bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__type(key, __u64);
	__type(value, struct cache_stat);
	__uint(max_entries, 8192);
} cache_stats SEC(".maps");

/* Configuration, rewritten by the loader before load (0 = off). */
const volatile __u32 self_tgid = 0;
const volatile __u32 filter_tgid = 0;
const volatile __u8 filter_cgroup = 0;
/* --follow: only tasks whose tgid is in tree. */
const volatile __u8 filter_tree = 0;
/* --memcg: only allocations charged to this memory cgroup (its id) or below. */
const volatile __u64 filter_memcg = 0;
/* The v1 hierarchy the memory controller is on; 0: cgroup v2. */
const volatile __u32 memcg_hierarchy = 0;
const volatile __u64 min_size = 0;
const volatile __u32 cache_filter_n = 0;
const volatile char cache_filter[MAX_CACHE_FILTERS][CACHE_NAME_LEN] = {};
const volatile __u32 stack_flags = 0;
/*
 * The page allocator's functions (__alloc_pages, alloc_pages_mpol,
 * folio_alloc, ...): their text ranges [start, end), sorted and merged, set
 * by the loader from kallsyms. A page allocation's call site is the first
 * frame past them (page_site).
 */
#define PAGE_RANGES 32
const volatile __u64 page_range[PAGE_RANGES][2] = {};
const volatile __u32 page_range_n = 0;
/* Stack map capacity: stacks2 ids start there. */
const volatile __u32 stack_base = 0;
/* stacks2 capacity, and the next free slot. */
const volatile __u32 stacks2_size = 0;
__u32 stacks2_next = 0;
/* log2 of the number of table buckets. */
const volatile __u32 table_bits = 0;
/* 0: full (walk every stack), 1: adaptive (walk only hot sites), 2: sample. */
const volatile __u8 trace_mode = 0;
/* adaptive: a site becomes hot when this many of its allocations are outstanding. */
const volatile __s64 hot_threshold = 64;
/* sample: record one allocation in sample_every, on average. */
const volatile __u32 sample_every = 1;
/* whether to count allocations and frees per cache (kmemprof top). */
const volatile __u8 count_caches = 0;
/* whether to keep per-stack totals (alloc_objects/alloc_space) in the kernel. */
const volatile __u8 keep_totals = 1;
/* bpf_get_current_task_btf exists (5.11+); else bpf_get_current_comm. */
const volatile __u8 have_task_btf = 1;
/*
 * Whether typed contexts (tp_btf, fentry) let programs load arguments that
 * point to something other than a struct (const void *ptr) directly; older
 * verifiers reject that, and such arguments are copied with a helper.
 */
const volatile __u8 ctx_direct = 1;
/*
 * Whether the tracing programs run as tp_btf, whose struct pointer
 * arguments (struct page *) the verifier types: no arithmetic on them, so
 * page_arg copies them as plain numbers.
 */
const volatile __u8 typed_ctx = 0;
/* Tracing programs (raw_tp, tp_btf): each field's argument index + 1, 0 = absent. */
const volatile __u8 arg_idx[NR_HOOKS][NR_FIELDS] = {};
/* Classic tracepoints: each field's offset and size in the record, 0 = absent. */
const volatile __u16 tp_off[NR_HOOKS][NR_FIELDS] = {};
const volatile __u8 tp_size[NR_HOOKS][NR_FIELDS] = {};
/* The kernel's page size, and the largest kmalloc served by a slab cache. */
const volatile __u32 page_shift = 12;
const volatile __u64 kmalloc_max = 8192;
/* Possible CPUs: a percpu allocation's bytes where the tracepoint lacks bytes_alloc. */
const volatile __u32 nr_cpus = 1;
/* Allocator functions hooked by kprobes or fentry, by slot; and their addresses. */
const volatile struct fn_layout fn_alloc[NR_FN_SLOTS] = {};
const volatile __u64 fn_addr[NR_FN_SLOTS] = {};
/* kprobe and fentry modes: recognise an allocator called by another hooked one. */
const volatile __u8 dedupe_nested = 0;
/* kvfree_call_rcu(head, ptr) passes the object (6.12+); before, (head, func). */
const volatile __u8 rcu_ptr_arg = 1;

/*
 * The linear map, calibrated by the loader after load: the struct page of a
 * linear-map address a is at vm_page_c + (a >> page_shift) * sizeof(struct
 * page). 0: not calibrated, caches cannot be read from objects.
 */
__u64 vm_page_c = 0;
/*
 * The allocation clock: CLOCK_MONOTONIC nanoseconds, written by user space
 * every few tens of milliseconds. Ages need no finer resolution, and a load
 * is cheaper than any time helper.
 */
volatile __u64 clock_ns = 0;
/* How often user space advances clock_ns (clockTick of bpf/tracer_linux.go). */
#define CLOCK_TICK_NS 10000000ULL
/*
 * fexit: per slot, the position (in words above ctx) of the allocator's
 * return address into its caller in the trampoline's frame, found at the first
 * event; 0 = not searched yet, 0xff = not found.
 */
__u8 fx_site_word[NR_FN_SLOTS] = {};

/*
 * Set by user space before it attaches the first backup program: from then
 * on the primaries note the key they handle.
 */
volatile __u32 backups_armed = 0;

/*
 * Set by user space once every program is attached. An allocator's return
 * without its entry is a loss only from then on: while the entry kprobes
 * are being attached, calls already under way return without one.
 */
volatile __u32 attached = 0;

/* Set when a free program is seen running nested in itself (see guard.h). */
volatile __u32 nested_runs = 0;

/* Test-run programs leave their results here. */
__u64 probe_result = 0;

#define MODE_FULL 0
#define MODE_ADAPTIVE 1
#define MODE_SAMPLE 2
#define MODE_COUNT 3 /* top: slab objects counted per cache, not recorded */

/* __GFP_ACCOUNT has been bit 22 since it was introduced (4.5). */
#define GFP_ACCOUNT (1U << 22)
#define GFP_RECLAIMABLE (1U << 4)
#define GFP_DMA (1U << 0)

/* Make the enums part of the object's BTF, for the generated Go bindings. */
const volatile enum hook _hook_enum = 0;
const volatile enum counter _counter_enum = 0;
const volatile enum field _field_enum = 0;

/*
 * Counters are per CPU, but programs nest on a CPU (an interrupt's event
 * during another's program): a plain increment could lose one, and every
 * event must land in exactly one outcome counter. An atomic add on a
 * per-CPU line costs a few nanoseconds and works on every kernel (without
 * BPF_FETCH).
 */
static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline void count_n(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		__sync_fetch_and_add(v, n);
}
