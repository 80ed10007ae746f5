// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * kmemprof BPF programs: track outstanding kernel allocations.
 *
 * Every allocation hook inserts the allocation into an outstanding map keyed
 * by its pointer (slab, percpu) or page; every free hook deletes it, whatever
 * hook allocated it. User space reads the maps at the end of a capture.
 *
 * The same handlers are reached from four attach modes: tp_btf and raw_tp
 * (typed or raw tracepoint arguments, the cheapest), classic tracepoints
 * (the perf trace record), and kprobe/kretprobe on the allocator functions
 * for kernels whose tracepoints do not serve. User space loads only the
 * programs of the mode and kinds it attaches.
 *
 * Nothing is dropped silently: every loss has a counter (see enum counter).
 */
#include "headers/kmemprof_vmlinux.h"
#include "headers/bpf_helpers.h"
#include "headers/bpf_tracing.h"
#include "headers/bpf_core_read.h"

#define EEXIST 17
#define ENOMEM 12
#define E2BIG 7
#define EFAULT 14

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
	NR_HOOKS,
};

/*
 * Counters; index into the per-CPU counters array. The first NR_HOOKS slots
 * count events per hook. Keep in sync with bpf/counters.go.
 */
enum counter {
	C_TRACKED = NR_HOOKS,   /* allocations inserted into an outstanding map */
	C_FREED,                /* tracked allocations deleted by a free */
	C_FREE_UNTRACKED_SLAB,  /* slab free of a pointer not tracked */
	C_FREE_UNTRACKED_PAGE,  /* page free of a page not tracked */
	C_FREE_UNTRACKED_PERCPU,/* percpu free of a pointer not tracked */
	C_ALLOC_TRACKED,        /* allocation at a pointer still tracked: a missed free */
	C_MAP_FULL,             /* outstanding map full: allocation not tracked */
	C_STACK_COLLISION,      /* stack walk lost: bucket held another stack (-EEXIST) */
	C_STACK_FULL,           /* stack walk lost: stack map full (-ENOMEM) */
	C_STACK_FAULT,          /* stack walk failed (-EFAULT and others) */
	C_TOTALS_FULL,          /* per-stack totals map full: alloc_* undercounted */
	C_CACHES_FULL,          /* cache name map full: cache shown as unknown */
	C_FILTERED,             /* allocations skipped by --pid/--cgroup/--cache/--min-size */
	C_SELF,                 /* allocations by kmemprof itself, skipped */
	C_NULL,                 /* failed allocations (NULL pointer), skipped */
	C_KRETPROBE_NO_ENTRY,   /* kretprobe without its entry arguments */
	C_SAMPLED_OUT,          /* allocations left out by --sample (accounted for by the scale) */
	C_WALKED,               /* stacks walked */
	C_HOT_SITES,            /* call sites that became hot (adaptive mode) */
	C_FREE_NULL,            /* frees of NULL (kfree(NULL) is a no-op) */
	C_SITES_CHURN,          /* hot sites cooled in the kernel as churn */
	C_STACK_RECOVERED,      /* stacks that collided in the stack map, kept in stacks2 */
	NR_COUNTERS,
};

/* Where the stack id field says why there is no stack; see tracer.StackID. */
#define STACK_LOST_COLLISION -1
#define STACK_LOST_FULL -2
#define STACK_LOST_WALK -3

#define STACK_NOT_WALKED -6 /* adaptive mode: the call site was not hot yet */

/* One outstanding allocation; slot i of the table holds records[i]. */
struct alloc_info {
	__u64 ts;          /* bpf_ktime_get_ns() at allocation */
	__u64 cache;       /* cache id, see struct cache_info */
	__u64 cgroup;      /* cgroup v2 id of the allocating task */
	__u64 site;        /* call site: return address into the allocator's caller (0: unknown) */
	__s32 stack_id;    /* >= 0: id in stacks; < 0: STACK_LOST_* or STACK_NOT_WALKED */
	__u32 tgid;
	__u32 bytes_req;
	__u32 bytes_alloc;
	__u32 gfp;
	__u8 kind;
	__u8 hook;
	__u8 accounted;
	__u8 order;
	char comm[TASK_COMM_LEN];
};

/*
 * The outstanding table: an open-addressing hash table in two BPF arrays,
 * cheaper per event than a BPF hash map (no bucket lock, no free list, no
 * value copy through a helper). Keys are (pointer << 2) | kind, never 0 (0 is
 * an empty slot); a key lives in one of the BUCKET_WAYS slots of its bucket,
 * claimed with compare-and-swap. A full bucket is counted as map_full.
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
	__s64 allocs;   /* allocations at this site tracked since the start */
	__s64 frees;    /* frees of them; allocs - frees are outstanding */
	__u64 hot;      /* non-zero: walk stacks of this site */
	__s64 arm;      /* outstanding count that turns it hot; 0: hot_threshold */
	__s64 w_allocs; /* allocs and frees when the current window began */
	__s64 w_frees;
};

/*
 * Cache ids. For kmem_cache hooks in raw modes: the struct kmem_cache pointer
 * (a kernel address, top bit set). In classic tracepoint mode: an FNV-1a hash
 * of the cache name with the top bit set. For kmalloc: a small synthetic id,
 * KMALLOC_ID | variant << 16 | bucket size, that user space names
 * ("kmalloc-64", "kmalloc-cg-64", "kmalloc-rcl-64", "dma-kmalloc-64",
 * "kmalloc-large"). Page and percpu allocations have cache 0.
 */
#define KMALLOC_ID (1ULL << 40)
#define KMALLOC_VARIANT_NORMAL 0
#define KMALLOC_VARIANT_CG 1
#define KMALLOC_VARIANT_RCL 2
#define KMALLOC_VARIANT_DMA 3
#define KMALLOC_MAX_CACHE_SIZE 8192
/* Page allocations' cache id: PAGE_DETAIL | gfp | order << 32 | migratetype << 40. */
#define PAGE_DETAIL (1ULL << 48)

struct cache_info {
	char name[CACHE_NAME_LEN];
	__u32 object_size;
	__u32 size;
	__u32 flags;
	__u8 allowed;   /* passes --cache */
	__u8 account;   /* SLAB_ACCOUNT set */
	__u8 reclaim;   /* SLAB_RECLAIM_ACCOUNT set */
	__u8 pad;
};

struct totals_key {
	__s64 stack_id;
	__u64 cache;
	__u64 cgroup;
	__u32 tgid;
	__u8 kind;
	__u8 pad[3];
	char comm[TASK_COMM_LEN];
};

struct totals_val {
	__u64 count;
	__u64 bytes;
};

/* Per-thread arguments saved by a kprobe for its kretprobe. */
struct kp_args {
	__u64 site;     /* the allocator's return address */
	__u64 cache;    /* struct kmem_cache * or 0 */
	__u64 size;     /* requested size for kmalloc-family functions */
	__u32 gfp;
	__u8 hook;
	__u8 pad[3];
};

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

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, NR_COUNTERS);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, struct kp_args);
	__uint(max_entries, 16384);
} kp_pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
	__uint(max_entries, 1);
} cgroup_filter SEC(".maps");

/* Per-cache allocation and free counts for `kmemprof top` (count_caches). */
struct cache_stat {
	__u64 allocs;
	__u64 frees;
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
const volatile __u64 min_size = 0;
const volatile __u32 cache_filter_n = 0;
const volatile char cache_filter[MAX_CACHE_FILTERS][CACHE_NAME_LEN] = {};
const volatile __u32 stack_flags = 0;
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
/*
 * The allocation clock: CLOCK_MONOTONIC nanoseconds, written by user space
 * every few tens of milliseconds. Ages need no finer resolution, and a load
 * is cheaper than any time helper.
 */
volatile __u64 clock_ns = 0;
/* whether to count allocations and frees per cache (kmemprof top). */
const volatile __u8 count_caches = 0;
/* whether to keep per-stack totals (alloc_objects/alloc_space) in the kernel. */
const volatile __u8 keep_totals = 1;

#define MODE_FULL 0
#define MODE_ADAPTIVE 1
#define MODE_SAMPLE 2

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		(*v)++;
}

static __always_inline __u32 slab_flag(int bit_present, __u32 bit, __u32 legacy)
{
	return bit_present ? (1U << bit) : legacy;
}

static __always_inline bool name_allowed(const char *name)
{
	if (cache_filter_n == 0)
		return true;
	for (int f = 0; f < MAX_CACHE_FILTERS; f++) {
		if (f >= cache_filter_n)
			break;
		bool eq = true;
		for (int i = 0; i < CACHE_NAME_LEN; i++) {
			char c = cache_filter[f][i];
			if (c != name[i]) {
				eq = false;
				break;
			}
			if (c == 0)
				break;
		}
		if (eq)
			return true;
	}
	return false;
}

/* Common filters that do not need the cache. Returns false to skip. */
static __always_inline bool pass_task_filters(__u32 tgid)
{
	if (self_tgid && tgid == self_tgid) {
		count(C_SELF);
		return false;
	}
	if (filter_tgid && tgid != filter_tgid) {
		count(C_FILTERED);
		return false;
	}
	if (filter_cgroup) {
		if (bpf_current_task_under_cgroup(&cgroup_filter, 0) != 1) {
			count(C_FILTERED);
			return false;
		}
	}
	return true;
}

/* second_chance_stack keeps a stack that collided in the stack map. */
/* Not inlined: the common path of walk_stack stays as small as before. */
static __noinline __s64 second_chance_stack(void *ctx)
{
	__u32 zero = 0;
	struct stack_buf *buf = bpf_map_lookup_elem(&stack_scratch, &zero);
	if (!buf || !stacks2_size) {
		count(C_STACK_COLLISION);
		return STACK_LOST_COLLISION;
	}
	long n = bpf_get_stack(ctx, buf->ips, sizeof(buf->ips), stack_flags & 0xff);
	if (n <= 0) {
		count(C_STACK_FAULT);
		return STACK_LOST_WALK;
	}
	__u64 h = 0xcbf29ce484222325ULL;
	for (int i = 0; i < MAX_STACK_DEPTH; i++) {
		if (i * 8 >= n)
			break;
		h ^= buf->ips[i];
		h *= 0x100000001b3ULL;
	}
	__u32 *slot = bpf_map_lookup_elem(&stacks2_index, &h);
	if (slot) {
		count(C_STACK_RECOVERED);
		return (__s64)stack_base + *slot;
	}
	__u32 s = __sync_fetch_and_add(&stacks2_next, 1);
	if (s >= stacks2_size) {
		count(C_STACK_COLLISION);
		return STACK_LOST_COLLISION;
	}
	struct stack_buf *dst = bpf_map_lookup_elem(&stacks2, &s);
	if (!dst) {
		count(C_STACK_COLLISION);
		return STACK_LOST_COLLISION;
	}
	/* Slots are used once, so the tail is still zero: copy the frames only. */
	if (n > sizeof(dst->ips))
		n = sizeof(dst->ips);
	bpf_probe_read_kernel(dst->ips, n, buf->ips);
	bpf_map_update_elem(&stacks2_index, &h, &s, BPF_NOEXIST);
	count(C_STACK_RECOVERED);
	return (__s64)stack_base + s;
}

static __always_inline __s64 walk_stack(void *ctx)
{
	long id = bpf_get_stackid(ctx, &stacks, stack_flags);
	count(C_WALKED);
	if (id >= 0)
		return id;
	if (id == -EEXIST)
		return second_chance_stack(ctx);
	if (id == -ENOMEM) {
		count(C_STACK_FULL);
		return STACK_LOST_FULL;
	}
	count(C_STACK_FAULT);
	return STACK_LOST_WALK;
}

static __always_inline void cache_stat_add(__u64 cache, int alloc)
{
	struct cache_stat *cs = bpf_map_lookup_elem(&cache_stats, &cache);
	if (!cs) {
		struct cache_stat init = {};
		bpf_map_update_elem(&cache_stats, &cache, &init, BPF_NOEXIST);
		cs = bpf_map_lookup_elem(&cache_stats, &cache);
		if (!cs)
			return;
	}
	if (alloc)
		cs->allocs++;
	else
		cs->frees++;
}

static __always_inline __u32 bucket_of(__u64 key)
{
	return (__u32)((key * 0x9E3779B97F4A7C15ULL) >> (64 - table_bits));
}

static __always_inline __u32 site_of(__u64 site)
{
	return (__u32)((site * 0x9E3779B97F4A7C15ULL) >> 48) & (NR_SITES - 1);
}

/*
 * table_insert claims a slot for key and returns its record, or NULL when the
 * bucket is full. A slot already holding key (a missed free) is reused.
 */
static __always_inline struct alloc_info *table_insert(__u64 key)
{
	__u32 b = bucket_of(key);
	struct bucket *bk = bpf_map_lookup_elem(&table_keys, &b);
	if (!bk)
		return NULL;
	__u32 slot = BUCKET_WAYS;
#pragma unroll
	for (int i = 0; i < BUCKET_WAYS; i++) {
		if (bk->key[i] == key) {
			count(C_ALLOC_TRACKED);
			slot = i;
			break;
		}
	}
	if (slot == BUCKET_WAYS) {
#pragma unroll
		for (int i = 0; i < BUCKET_WAYS; i++) {
			if (bk->key[i] == 0 && __sync_val_compare_and_swap(&bk->key[i], 0, key) == 0) {
				slot = i;
				break;
			}
		}
	}
	if (slot == BUCKET_WAYS) {
		count(C_MAP_FULL);
		return NULL;
	}
	count(C_TRACKED);
	__u32 idx = b * BUCKET_WAYS + slot;
	return bpf_map_lookup_elem(&table_recs, &idx);
}

/*
 * record_alloc inserts one allocation. Callers have counted the event, checked
 * the pointer and applied the cache and size filters; the task filters run here,
 * before the stack walk, which is the expensive part.
 */
static __always_inline void record_alloc(void *ctx, __u64 ptr, __u8 kind, __u8 hook, __u64 site,
					 __u64 cache, __u64 req, __u64 alloc, __u32 gfp,
					 __u8 accounted, __u8 order)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;

	if (!pass_task_filters(tgid))
		return;

	if (trace_mode == MODE_SAMPLE && sample_every > 1) {
		/* Uniform 1-in-N: unbiased once values are scaled by N. */
		if (bpf_get_prandom_u32() % sample_every != 0) {
			count(C_SAMPLED_OUT);
			return;
		}
	}

	__u64 key = (ptr << 2) | kind;
	struct alloc_info *v = table_insert(key);
	if (!v)
		return;

	__s64 stack_id = STACK_NOT_WALKED;
	if (trace_mode == MODE_ADAPTIVE) {
		__u32 si = site_of(site);
		struct site_state *st = bpf_map_lookup_elem(&sites, &si);
		if (st) {
			__s64 allocs = __sync_fetch_and_add(&st->allocs, 1) + 1;
			__s64 frees = st->frees;
			__s64 out = allocs - frees;
			__s64 arm = st->arm ? st->arm : hot_threshold;
			if (st->hot) {
				__s64 wa = allocs - st->w_allocs;
				if (wa >= CHURN_WINDOW) {
					__s64 wf = frees - st->w_frees;
					st->w_allocs = allocs;
					st->w_frees = frees;
					if (wf * 16 >= wa * 15) {
						/* churn: cool, and stay cold until it doubles */
						st->hot = 0;
						st->arm = out * 2 > out + hot_threshold ? out * 2 : out + hot_threshold;
						count(C_SITES_CHURN);
						goto walked;
					}
				}
				stack_id = walk_stack(ctx);
			} else if (out >= arm) {
				if (__sync_val_compare_and_swap(&st->hot, 0, 1) == 0) {
					count(C_HOT_SITES);
					st->w_allocs = allocs;
					st->w_frees = frees;
				}
				stack_id = walk_stack(ctx);
			}
		walked:;
		}
	} else {
		stack_id = walk_stack(ctx);
	}

	/* User space ticks clock_ns every CLOCK_TICK; reading it costs one load. */
	v->ts = clock_ns;
	v->cache = cache;
	v->cgroup = bpf_get_current_cgroup_id();
	v->site = site;
	v->stack_id = stack_id;
	v->tgid = tgid;
	v->bytes_req = req;
	v->bytes_alloc = alloc;
	v->gfp = gfp;
	v->kind = kind;
	v->hook = hook;
	v->accounted = accounted;
	v->order = order;
	/* Two loads from the task, cheaper than bpf_get_current_comm's copy. */
	struct task_struct *task = bpf_get_current_task_btf();
	__builtin_memcpy(v->comm, task->comm, sizeof(v->comm));

	if (count_caches)
		cache_stat_add(cache, 1);

	if (!keep_totals)
		return;
	struct totals_key tk = {};
	tk.stack_id = stack_id;
	tk.cache = cache;
	tk.cgroup = v->cgroup;
	tk.tgid = tgid;
	tk.kind = kind;
	__builtin_memcpy(tk.comm, v->comm, sizeof(tk.comm));
	struct totals_val *tv = bpf_map_lookup_elem(&totals, &tk);
	if (tv) {
		tv->count++;
		tv->bytes += alloc;
		return;
	}
	struct totals_val init = {.count = 1, .bytes = alloc};
	long err = bpf_map_update_elem(&totals, &tk, &init, BPF_NOEXIST);
	if (err == -EEXIST) {
		/* Inserted meanwhile (by an interrupt on this CPU or by another CPU,
		 * whose per-CPU slot it set); add to this CPU's slot. */
		tv = bpf_map_lookup_elem(&totals, &tk);
		if (tv) {
			tv->count++;
			tv->bytes += alloc;
		}
	} else if (err) {
		count(C_TOTALS_FULL);
	}
}

static __always_inline void record_free(__u64 ptr, __u8 kind, __u32 untracked)
{
	if (!ptr) {
		count(C_FREE_NULL);
		return;
	}
	__u64 key = (ptr << 2) | kind;
	__u32 b = bucket_of(key);
	struct bucket *bk = bpf_map_lookup_elem(&table_keys, &b);
	if (!bk)
		return;
#pragma unroll
	for (int i = 0; i < BUCKET_WAYS; i++) {
		if (bk->key[i] == key) {
			if (trace_mode == MODE_ADAPTIVE || count_caches) {
				__u32 idx = b * BUCKET_WAYS + i;
				struct alloc_info *v = bpf_map_lookup_elem(&table_recs, &idx);
				if (v && trace_mode == MODE_ADAPTIVE) {
					__u32 si = site_of(v->site);
					struct site_state *st = bpf_map_lookup_elem(&sites, &si);
					if (st)
						__sync_fetch_and_add(&st->frees, 1);
				}
				if (v && count_caches)
					cache_stat_add(v->cache, 0);
			}
			bk->key[i] = 0;
			count(C_FREED);
			return;
		}
	}
	count(untracked);
}

/*
 * cache_lookup returns the cache_info for a kmem_cache, registering it on first
 * sight (name, sizes, flags, whether it passes --cache).
 */
static __always_inline struct cache_info *cache_lookup(struct kmem_cache *s)
{
	__u64 id = (__u64)s;
	struct cache_info *ci = bpf_map_lookup_elem(&caches, &id);
	if (ci)
		return ci;

	struct cache_info n = {};
	const char *name = BPF_CORE_READ(s, name);
	bpf_probe_read_kernel_str(n.name, sizeof(n.name), name);
	n.object_size = BPF_CORE_READ(s, object_size);
	n.size = BPF_CORE_READ(s, size);
	n.flags = BPF_CORE_READ(s, flags);
	__u32 acct = slab_flag(bpf_core_enum_value_exists(enum _slab_flag_bits, _SLAB_ACCOUNT),
			       bpf_core_enum_value(enum _slab_flag_bits, _SLAB_ACCOUNT), 0x04000000U);
	__u32 recl = slab_flag(bpf_core_enum_value_exists(enum _slab_flag_bits, _SLAB_RECLAIM_ACCOUNT),
			       bpf_core_enum_value(enum _slab_flag_bits, _SLAB_RECLAIM_ACCOUNT), 0x00020000U);
	n.account = (n.flags & acct) != 0;
	n.reclaim = (n.flags & recl) != 0;
	n.allowed = name_allowed(n.name);
	if (bpf_map_update_elem(&caches, &id, &n, BPF_NOEXIST) == -EEXIST) {
		ci = bpf_map_lookup_elem(&caches, &id);
		if (ci)
			return ci;
	}
	ci = bpf_map_lookup_elem(&caches, &id);
	if (!ci)
		count(C_CACHES_FULL);
	return ci;
}

/* __GFP_ACCOUNT has been bit 22 since it was introduced (4.5). */
#define GFP_ACCOUNT (1U << 22)
#define GFP_RECLAIMABLE (1U << 4)
#define GFP_DMA (1U << 0)

static __always_inline void on_cache_alloc(void *ctx, __u64 site, __u64 ptr, struct kmem_cache *s, __u32 gfp)
{
	count(HOOK_CACHE_ALLOC);
	if (!ptr) {
		count(C_NULL);
		return;
	}
	/*
	 * Sizes and the SLAB_ACCOUNT flag are per cache: user space fills them in
	 * from the cache's details (see resolve_cache), so the hot path reads
	 * nothing from the kmem_cache unless a filter needs it.
	 */
	__u64 req = 0, alloc = 0;
	if (cache_filter_n) {
		struct cache_info *ci = cache_lookup(s);
		if (!ci || !ci->allowed) {
			count(C_FILTERED);
			return;
		}
	}
	if (min_size) {
		alloc = BPF_CORE_READ(s, size);
		req = BPF_CORE_READ(s, object_size);
		if (alloc < min_size) {
			count(C_FILTERED);
			return;
		}
	}
	__u8 accounted = (gfp & GFP_ACCOUNT) != 0;
	record_alloc(ctx, ptr, KIND_SLAB, HOOK_CACHE_ALLOC, site, (__u64)s, req, alloc, gfp,
		     accounted, 0);
}

static __always_inline __u64 kmalloc_id(__u64 alloc, __u32 gfp)
{
	__u64 variant = KMALLOC_VARIANT_NORMAL;
	if (gfp & GFP_DMA)
		variant = KMALLOC_VARIANT_DMA;
	else if (gfp & GFP_RECLAIMABLE)
		variant = KMALLOC_VARIANT_RCL;
	else if (gfp & GFP_ACCOUNT)
		variant = KMALLOC_VARIANT_CG;
	if (alloc > KMALLOC_MAX_CACHE_SIZE)
		return KMALLOC_ID | (variant << 16);
	return KMALLOC_ID | (variant << 16) | alloc;
}

static __always_inline void on_kmalloc(void *ctx, __u64 site, __u64 ptr, __u64 req, __u64 alloc, __u32 gfp)
{
	count(HOOK_KMALLOC);
	if (!ptr) {
		count(C_NULL);
		return;
	}
	__u64 cache = kmalloc_id(alloc, gfp);
	if (cache_filter_n) {
		/* User space registered every kmalloc id with its verdict. */
		struct cache_info *ci = bpf_map_lookup_elem(&caches, &cache);
		if (!ci || !ci->allowed) {
			count(C_FILTERED);
			return;
		}
	}
	if (min_size && alloc < min_size) {
		count(C_FILTERED);
		return;
	}
	record_alloc(ctx, ptr, KIND_SLAB, HOOK_KMALLOC, site, cache, req, alloc, gfp,
		     (gfp & GFP_ACCOUNT) != 0, 0);
}

#define PAGE_SIZE 4096

/* Page allocations carry their migrate type in the high nibble of hook. */
#define HOOK_MIGRATE_SHIFT 4

static __always_inline void on_page_alloc(void *ctx, __u64 key, __u32 order, __u32 gfp, int migratetype)
{
	count(HOOK_PAGE_ALLOC);
	if (!key) {
		count(C_NULL);
		return;
	}
	__u64 bytes = (__u64)PAGE_SIZE << (order & 31);
	if (cache_filter_n) {
		count(C_FILTERED);
		return;
	}
	if (min_size && bytes < min_size) {
		count(C_FILTERED);
		return;
	}
	__u8 hook = HOOK_PAGE_ALLOC | ((migratetype & 0xf) << HOOK_MIGRATE_SHIFT);
	/*
	 * Pages have no cache: their cache id carries what splits their samples
	 * (gfp flags, order, migrate type), so the totals split the same way.
	 */
	__u64 detail = PAGE_DETAIL | (__u64)gfp | ((__u64)(order & 0xff) << 32) |
		       ((__u64)(migratetype & 0xff) << 40);
	record_alloc(ctx, key, KIND_PAGE, hook, 0, detail, bytes, bytes, gfp,
		     (gfp & GFP_ACCOUNT) != 0, order);
}

static __always_inline void on_percpu_alloc(void *ctx, __u64 site, __u64 ptr, __u64 req, __u64 alloc, __u32 gfp)
{
	count(HOOK_PERCPU_ALLOC);
	if (!ptr) {
		count(C_NULL);
		return;
	}
	if (cache_filter_n) {
		count(C_FILTERED);
		return;
	}
	if (min_size && alloc < min_size) {
		count(C_FILTERED);
		return;
	}
	record_alloc(ctx, ptr, KIND_PERCPU, HOOK_PERCPU_ALLOC, site, 0, req, alloc, gfp,
		     (gfp & GFP_ACCOUNT) != 0, 0);
}

static __always_inline void on_cache_free(__u64 ptr)
{
	count(HOOK_CACHE_FREE);
	record_free(ptr, KIND_SLAB, C_FREE_UNTRACKED_SLAB);
}

static __always_inline void on_kfree(__u64 ptr)
{
	count(HOOK_KFREE);
	record_free(ptr, KIND_SLAB, C_FREE_UNTRACKED_SLAB);
}

static __always_inline void on_page_free(__u64 key, __u32 hook)
{
	count(hook);
	record_free(key, KIND_PAGE, C_FREE_UNTRACKED_PAGE);
}

static __always_inline void on_percpu_free(__u64 ptr)
{
	count(HOOK_PERCPU_FREE);
	record_free(ptr, KIND_PERCPU, C_FREE_UNTRACKED_PERCPU);
}

/*
 * tp_btf and raw_tp: the same argument lists (BTF prototypes btf_trace_*),
 * typed for tp_btf and raw u64 slots for raw_tp. BPF_PROG reads both.
 * Pages are keyed by their struct page pointer in these modes.
 */
#define TYPED_PROGRAMS(SECPFX, PFX)                                                          \
	SEC(SECPFX "/kmem_cache_alloc")                                                      \
	int BPF_PROG(PFX##_cache_alloc, unsigned long call_site, const void *ptr,            \
		     struct kmem_cache *s, gfp_t gfp_flags, int node)                         \
	{                                                                                    \
		on_cache_alloc(ctx, call_site, (__u64)ptr, s, gfp_flags);                               \
		return 0;                                                                    \
	}                                                                                    \
	SEC(SECPFX "/kmem_cache_free")                                                       \
	int BPF_PROG(PFX##_cache_free, unsigned long call_site, const void *ptr)             \
	{                                                                                    \
		on_cache_free((__u64)ptr);                                                   \
		return 0;                                                                    \
	}                                                                                    \
	SEC(SECPFX "/kmalloc")                                                               \
	int BPF_PROG(PFX##_kmalloc, unsigned long call_site, const void *ptr,                \
		     size_t bytes_req, size_t bytes_alloc, gfp_t gfp_flags, int node)         \
	{                                                                                    \
		on_kmalloc(ctx, call_site, (__u64)ptr, bytes_req, bytes_alloc, gfp_flags);              \
		return 0;                                                                    \
	}                                                                                    \
	SEC(SECPFX "/kfree")                                                                 \
	int BPF_PROG(PFX##_kfree, unsigned long call_site, const void *ptr)                  \
	{                                                                                    \
		on_kfree((__u64)ptr);                                                        \
		return 0;                                                                    \
	}                                                                                    \
	SEC(SECPFX "/mm_page_alloc")                                                         \
	int BPF_PROG(PFX##_page_alloc, struct page *page, unsigned int order, gfp_t gfp_flags, \
		     int migratetype)                                                        \
	{                                                                                    \
		on_page_alloc(ctx, (__u64)page, order, gfp_flags, migratetype);              \
		return 0;                                                                    \
	}                                                                                    \
	SEC(SECPFX "/mm_page_free")                                                          \
	int BPF_PROG(PFX##_page_free, struct page *page, unsigned int order)                 \
	{                                                                                    \
		on_page_free((__u64)page, HOOK_PAGE_FREE);                                   \
		return 0;                                                                    \
	}                                                                                    \
	SEC(SECPFX "/mm_page_free_batched")                                                  \
	int BPF_PROG(PFX##_page_freeb, struct page *page)                                    \
	{                                                                                    \
		on_page_free((__u64)page, HOOK_PAGE_FREE_BATCHED);                           \
		return 0;                                                                    \
	}                                                                                    \
	SEC(SECPFX "/percpu_alloc_percpu")                                                   \
	int BPF_PROG(PFX##_pcpu_alloc, unsigned long call_site, bool reserved, bool is_atomic, \
		     size_t size, size_t align, void *base_addr, int off, void *ptr,          \
		     size_t bytes_alloc, gfp_t gfp_flags)                                     \
	{                                                                                    \
		on_percpu_alloc(ctx, call_site, (__u64)ptr, size, bytes_alloc, gfp_flags);              \
		return 0;                                                                    \
	}                                                                                    \
	SEC(SECPFX "/percpu_free_percpu")                                                    \
	int BPF_PROG(PFX##_pcpu_free, void *base_addr, int off, void *ptr)                   \
	{                                                                                    \
		on_percpu_free((__u64)ptr);                                                  \
		return 0;                                                                    \
	}

TYPED_PROGRAMS("tp_btf", btf)
TYPED_PROGRAMS("raw_tp", raw)

/*
 * Classic tracepoints: the perf trace record. Cache ids are a hash of the
 * cache name; pages are keyed by pfn.
 */
static __always_inline __u64 fnv1a(const char *s)
{
	__u64 h = 0xcbf29ce484222325ULL;
	for (int i = 0; i < CACHE_NAME_LEN; i++) {
		if (!s[i])
			break;
		h ^= (__u8)s[i];
		h *= 0x100000001b3ULL;
	}
	return h | (1ULL << 63);
}

SEC("tracepoint/kmem/kmem_cache_alloc")
int tp_cache_alloc(struct trace_event_raw_kmem_cache_alloc *ctx)
{
	count(HOOK_CACHE_ALLOC);
	__u64 ptr = (__u64)BPF_CORE_READ(ctx, ptr);
	if (!ptr) {
		count(C_NULL);
		return 0;
	}
	char name[CACHE_NAME_LEN] = {};
	__u32 loc = BPF_CORE_READ(ctx, __data_loc_name);
	bpf_probe_read_kernel_str(name, sizeof(name), (void *)ctx + (loc & 0xffff));
	__u64 id = fnv1a(name);
	struct cache_info *ci = bpf_map_lookup_elem(&caches, &id);
	if (!ci) {
		struct cache_info n = {};
		__builtin_memcpy(n.name, name, sizeof(n.name));
		n.object_size = BPF_CORE_READ(ctx, bytes_req);
		n.size = BPF_CORE_READ(ctx, bytes_alloc);
		n.allowed = name_allowed(n.name);
		bpf_map_update_elem(&caches, &id, &n, BPF_NOEXIST);
		ci = bpf_map_lookup_elem(&caches, &id);
		if (!ci)
			count(C_CACHES_FULL);
	}
	if (cache_filter_n && (!ci || !ci->allowed)) {
		count(C_FILTERED);
		return 0;
	}
	__u64 req = BPF_CORE_READ(ctx, bytes_req);
	__u64 alloc = BPF_CORE_READ(ctx, bytes_alloc);
	if (min_size && alloc < min_size) {
		count(C_FILTERED);
		return 0;
	}
	__u32 gfp = BPF_CORE_READ(ctx, gfp_flags);
	__u8 accounted = (gfp & GFP_ACCOUNT) != 0;
	if (bpf_core_field_exists(ctx->accounted))
		accounted = BPF_CORE_READ(ctx, accounted);
	record_alloc(ctx, ptr, KIND_SLAB, HOOK_CACHE_ALLOC, BPF_CORE_READ(ctx, call_site), id, req, alloc, gfp,
		     accounted, 0);
	return 0;
}

SEC("tracepoint/kmem/kmem_cache_free")
int tp_cache_free(struct trace_event_raw_kmem_cache_free *ctx)
{
	on_cache_free((__u64)BPF_CORE_READ(ctx, ptr));
	return 0;
}

SEC("tracepoint/kmem/kmalloc")
int tp_kmalloc(struct trace_event_raw_kmalloc *ctx)
{
	on_kmalloc(ctx, BPF_CORE_READ(ctx, call_site), (__u64)BPF_CORE_READ(ctx, ptr), BPF_CORE_READ(ctx, bytes_req),
		   BPF_CORE_READ(ctx, bytes_alloc), BPF_CORE_READ(ctx, gfp_flags));
	return 0;
}

SEC("tracepoint/kmem/kfree")
int tp_kfree(struct trace_event_raw_kfree *ctx)
{
	on_kfree((__u64)BPF_CORE_READ(ctx, ptr));
	return 0;
}

SEC("tracepoint/kmem/mm_page_alloc")
int tp_page_alloc(struct trace_event_raw_mm_page_alloc *ctx)
{
	/* pfn is -1UL when the allocation failed. */
	__u64 pfn = BPF_CORE_READ(ctx, pfn);
	on_page_alloc(ctx, pfn == (__u64)-1 ? 0 : pfn + 1, BPF_CORE_READ(ctx, order),
		      BPF_CORE_READ(ctx, gfp_flags), BPF_CORE_READ(ctx, migratetype));
	return 0;
}

SEC("tracepoint/kmem/mm_page_free")
int tp_page_free(struct trace_event_raw_mm_page_free *ctx)
{
	on_page_free(BPF_CORE_READ(ctx, pfn) + 1, HOOK_PAGE_FREE);
	return 0;
}

SEC("tracepoint/kmem/mm_page_free_batched")
int tp_page_freeb(struct trace_event_raw_mm_page_free_batched *ctx)
{
	on_page_free(BPF_CORE_READ(ctx, pfn) + 1, HOOK_PAGE_FREE_BATCHED);
	return 0;
}

SEC("tracepoint/percpu/percpu_alloc_percpu")
int tp_pcpu_alloc(struct trace_event_raw_percpu_alloc_percpu *ctx)
{
	on_percpu_alloc(ctx, BPF_CORE_READ(ctx, call_site), (__u64)BPF_CORE_READ(ctx, ptr), BPF_CORE_READ(ctx, size),
			BPF_CORE_READ(ctx, bytes_alloc), BPF_CORE_READ(ctx, gfp_flags));
	return 0;
}

SEC("tracepoint/percpu/percpu_free_percpu")
int tp_pcpu_free(struct trace_event_raw_percpu_free_percpu *ctx)
{
	on_percpu_free((__u64)BPF_CORE_READ(ctx, ptr));
	return 0;
}

/*
 * kprobe mode: for kernels whose kmem tracepoints do not serve. An entry probe
 * saves the arguments per thread; the return probe has the pointer. The
 * loader attaches each program to whichever allocator symbols the kernel has
 * (kmem_cache_alloc_noprof or kmem_cache_alloc, ...). The stack is walked in
 * the return probe, whose leaf is the allocator's caller.
 */
static __always_inline void kp_save(struct pt_regs *ctx, __u64 cache, __u64 size, __u32 gfp, __u8 hook)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 site = 0;
	/* At function entry the return address is at the top of the stack. */
	bpf_probe_read_kernel(&site, sizeof(site), (void *)PT_REGS_SP(ctx));
	struct kp_args a = {.site = site, .cache = cache, .size = size, .gfp = gfp, .hook = hook};
	bpf_map_update_elem(&kp_pending, &id, &a, BPF_ANY);
}

/* kmem_cache_alloc*(struct kmem_cache *s, ...gfp_t flags...) */
SEC("kprobe/kmem_cache_alloc_noprof")
int BPF_KPROBE(kp_cache_alloc, struct kmem_cache *s, gfp_t gfp)
{
	kp_save(ctx, (__u64)s, 0, gfp, HOOK_CACHE_ALLOC);
	return 0;
}

/* __kmalloc*(size_t size, gfp_t flags, ...) and __kmalloc_large*(size, flags) */
SEC("kprobe/__kmalloc_noprof")
int BPF_KPROBE(kp_kmalloc, size_t size, gfp_t gfp)
{
	kp_save(ctx, 0, size, gfp, HOOK_KMALLOC);
	return 0;
}

/* __kmalloc_cache*(struct kmem_cache *s, gfp_t flags, size_t size) */
SEC("kprobe/__kmalloc_cache_noprof")
int BPF_KPROBE(kp_kmalloc_cache, struct kmem_cache *s, gfp_t gfp, size_t size)
{
	kp_save(ctx, (__u64)s, size, gfp, HOOK_KMALLOC);
	return 0;
}

/* kmem_cache_alloc_lru*(struct kmem_cache *s, struct list_lru *lru, gfp_t flags) */
SEC("kprobe/kmem_cache_alloc_lru_noprof")
int BPF_KPROBE(kp_cache_alloc_lru, struct kmem_cache *s, void *lru, gfp_t gfp)
{
	kp_save(ctx, (__u64)s, 0, gfp, HOOK_CACHE_ALLOC);
	return 0;
}

/* __kmalloc_node*(size_t size, kmem_buckets *b, gfp_t flags, int node): CONFIG_SLAB_BUCKETS */
SEC("kprobe/__kmalloc_node_noprof")
int BPF_KPROBE(kp_kmalloc_b, size_t size, void *b, gfp_t gfp)
{
	kp_save(ctx, 0, size, gfp, HOOK_KMALLOC);
	return 0;
}

/* __kmalloc_cache_node*(struct kmem_cache *s, gfp_t flags, int node, size_t size) */
SEC("kprobe/__kmalloc_cache_node_noprof")
int BPF_KPROBE(kp_kmalloc_cnode, struct kmem_cache *s, gfp_t gfp, int node, size_t size)
{
	kp_save(ctx, (__u64)s, size, gfp, HOOK_KMALLOC);
	return 0;
}

SEC("kretprobe/kmem_cache_alloc_noprof")
int BPF_KRETPROBE(krp_alloc, void *ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct kp_args *a = bpf_map_lookup_elem(&kp_pending, &id);
	if (!a) {
		count(C_KRETPROBE_NO_ENTRY);
		return 0;
	}
	struct kp_args args = *a;
	bpf_map_delete_elem(&kp_pending, &id);

	if (args.hook == HOOK_CACHE_ALLOC) {
		on_cache_alloc(ctx, args.site, (__u64)ret, (struct kmem_cache *)args.cache, args.gfp);
		return 0;
	}
	/* kmalloc family: the bucket size is the cache's size when known. */
	__u64 alloc = args.size;
	if (args.cache) {
		struct cache_info *ci = cache_lookup((struct kmem_cache *)args.cache);
		if (ci)
			alloc = ci->size;
	}
	on_kmalloc(ctx, args.site, (__u64)ret, args.size, alloc, args.gfp);
	return 0;
}

SEC("kprobe/kmem_cache_free")
int BPF_KPROBE(kp_cache_free, struct kmem_cache *s, void *ptr)
{
	on_cache_free((__u64)ptr);
	return 0;
}

SEC("kprobe/kfree")
int BPF_KPROBE(kp_kfree, void *ptr)
{
	on_kfree((__u64)ptr);
	return 0;
}

/*
 * resolve_cache is not attached: user space runs it (BPF_PROG_TEST_RUN) once
 * per kmem_cache pointer found in the records, to record the cache's name,
 * sizes and flags in the caches map.
 */
SEC("raw_tp")
int resolve_cache(struct bpf_raw_tracepoint_args *ctx)
{
	cache_lookup((struct kmem_cache *)ctx->args[0]);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
