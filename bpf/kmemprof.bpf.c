// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * kmemprof BPF programs: track outstanding kernel allocations.
 *
 * Every allocation hook inserts the allocation into an outstanding table keyed
 * by its pointer (slab, percpu) or page; every free hook deletes it, whatever
 * hook allocated it. User space reads the table at the end of a capture.
 *
 * One object serves every kernel from 5.10 on. What differs between kernels is
 * decided by the loader from the running kernel and written into the read-only
 * configuration below before load, so the verifier sees constants and drops
 * the paths a kernel does not take:
 *   - tracepoint argument lists (raw_tp, tp_btf) come from the kernel's BTF
 *     prototypes (btf_trace_*): arg_idx gives each field's position;
 *   - classic tracepoint records come from their tracefs format: tp_off and
 *     tp_size give each field's offset and size;
 *   - allocator function signatures (kprobe, fentry) come from the functions'
 *     BTF: fn_alloc gives each slot's layout;
 *   - kernels without BPF atomics (before 5.12) load the *_na ("no atomics")
 *     programs, whose outstanding table is a BPF hash map instead of the
 *     compare-and-swap table;
 *   - where an allocation hook does not pass the slab cache (kmem_cache_alloc
 *     before 6.0, classic tracepoints, kmalloc in kprobe and fentry modes), the
 *     cache is read from the object's struct slab, through the linear map
 *     calibrated by the loader (vm_page_c).
 *
 * The attach modes: raw_tp and tp_btf (the same programs, typed for tp_btf),
 * classic tracepoints (tp_*), kprobes on the allocator functions (kp_*), and
 * fentry/fexit on them (fx_*, fe_*). Frees that have no tracepoint
 * (kmem_cache_free_bulk, which kfree_bulk and batched RCU frees use) are hooked
 * with fentry or a kprobe wherever the kernel has either.
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

#include "kmemprof.h"

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
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct last_alloc);
	__uint(max_entries, 1);
} last_allocs SEC(".maps");

/*
 * Nested frees. From Linux 6.1 the kernel does not run a raw_tp, tp_btf or
 * fentry program on a CPU where that same program is already running: an
 * interrupt that frees (an RCU callback freeing files, dentries or maple
 * nodes, say) while the free program runs in process context would be
 * lost, and the object would look leaked. So each free hook has a second,
 * backup program for the events the kernel did not run the primary for.
 * A second program on a tracepoint costs every event a second dispatch
 * (about 60 ns here, as much as the primary's whole work); with
 * --nested-frees lazy, user space attaches it only once the kernel reports
 * a miss of the primary. Before the first backup is attached, user space
 * sets backups_armed.
 *
 * From then on both programs run for each event, in either order (a
 * tracepoint runs its programs in the order they were attached, a BPF
 * trampoline the other way round), and exactly one handles it. Each keeps
 * a depth on this CPU while it runs. A program that starts while the other
 * one is running below it is the only one the kernel runs for this event:
 * it handles it. Otherwise the first of the two to run claims the event
 * (its key, in the slot of its nesting level) and handles it, and the
 * second finds the claim, clears it and skips. Kernels that do run a
 * program nested in itself (before 6.1) are found out by that depth, and
 * from then on every event goes through the claim.
 */
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

/* Set when a free program is seen running nested in itself (see free_guard). */
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

/*
 * guard_enter starts a free hook's program on an event (see free_guard) and
 * says whether the other program of the hook handles it (*skip). It
 * returns the guard to pass to guard_exit, or NULL when the hook has no
 * backup.
 */
static __always_inline struct free_guard *guard_enter(__u32 hook, __u64 key, const int role, bool *skip)
{
	*skip = false;
	if (!backups_armed)
		return NULL;
	struct free_guard *g = bpf_map_lookup_elem(&free_guards, &hook);
	if (!g)
		return NULL;
	__u32 own = g->depth[role], other = g->depth[role ^ 1];
	if (own)
		nested_runs = 1;
	g->depth[role] = own + 1;
	__u32 l = (own + other) & 3;
	if (other && !nested_runs) {
		/* The kernel skips the other one for this event. Claimed all the same, in case it does not. */
		g->slot[l] = key;
		if (role == ROLE_BACKUP)
			count(C_RESCUED);
		return g;
	}
	if (g->slot[l] == key) {
		g->slot[l] = 0;
		*skip = true;
		/* The backup handled an event the primary saw: not a rescue. */
		if (role == ROLE_PRIMARY)
			count_n(C_RESCUED, (__u64)-1);
		return g;
	}
	g->slot[l] = key;
	if (role == ROLE_BACKUP)
		count(C_RESCUED);
	return g;
}

static __always_inline void guard_exit(struct free_guard *g, const int role)
{
	if (g)
		g->depth[role]--;
}

/* ------------------------------------------------------------------ */
/* Reading arguments                                                   */

/*
 * CTX_WORD loads word n of a tracing context with the offset in the load
 * instruction itself, as the verifier requires: written in C, the loads of a
 * switch over the index are merged into one load from a computed pointer,
 * which it rejects.
 */
#define CTX_WORD(ctx, n)                                                                       \
	({                                                                                     \
		__u64 __v;                                                                     \
		asm volatile("%[v] = *(u64 *)(%[c] + " #n ")" : [v] "=r"(__v) : [c] "r"(ctx)); \
		__v;                                                                           \
	})

/* ctx_arg returns tracing argument i (an index + 1 from arg_idx or fn_alloc). */
static __always_inline __u64 ctx_arg(__u64 *ctx, int i)
{
	switch (i) {
	case 1: return CTX_WORD(ctx, 0);
	case 2: return CTX_WORD(ctx, 8);
	case 3: return CTX_WORD(ctx, 16);
	case 4: return CTX_WORD(ctx, 24);
	case 5: return CTX_WORD(ctx, 32);
	case 6: return CTX_WORD(ctx, 40);
	case 7: return CTX_WORD(ctx, 48);
	case 8: return CTX_WORD(ctx, 56);
	case 9: return CTX_WORD(ctx, 64);
	case 10: return CTX_WORD(ctx, 72);
	case 11: return CTX_WORD(ctx, 80);
	case 12: return CTX_WORD(ctx, 88);
	}
	return 0;
}

/*
 * ctx_ptr returns a pointer argument that does not point to a struct (const
 * void *ptr): loaded directly where the verifier allows it, else copied.
 */
static __always_inline __u64 ctx_ptr(__u64 *ctx, int i)
{
	if (ctx_direct || i == 0)
		return ctx_arg(ctx, i);
	__u64 v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), (void *)ctx + 8 * (i - 1));
	return v;
}

/* ctx_copy copies tracing argument i with a helper, whatever its type. */
static __always_inline __u64 ctx_copy(__u64 *ctx, int i)
{
	__u64 v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), (void *)ctx + 8 * (i - 1));
	return v;
}

/* tp_field reads a field of a classic tracepoint record; 0 when absent. */
static __always_inline __u64 tp_field(void *ctx, int hook, int f)
{
	__u32 off = tp_off[hook][f];
	__u32 size = tp_size[hook][f];
	__u64 v = 0;
	if (!off || !size || size > 8)
		return 0;
	bpf_probe_read_kernel(&v, size, ctx + off);
	return v;
}

/*
 * kp_arg returns kprobe register argument i (index + 1). The offsets are the
 * architecture's struct pt_regs, which the kernel gives kprobe programs as it
 * is (an ABI); loads with the offset in the instruction, as for CTX_WORD.
 */
#if defined(__TARGET_ARCH_arm64)
#define KP_PARM1 0
#define KP_PARM2 8
#define KP_PARM3 16
#define KP_PARM4 24
#define KP_PARM5 32
#else
#define KP_PARM1 112 /* di */
#define KP_PARM2 104 /* si */
#define KP_PARM3 96  /* dx */
#define KP_PARM4 88  /* cx */
#define KP_PARM5 72  /* r8 */
#endif
#define KP_WORD(ctx, off) CTX_WORD(ctx, off)

static __always_inline __u64 kp_arg(struct pt_regs *ctx, int i)
{
	switch (i) {
	case 1: return KP_WORD(ctx, KP_PARM1);
	case 2: return KP_WORD(ctx, KP_PARM2);
	case 3: return KP_WORD(ctx, KP_PARM3);
	case 4: return KP_WORD(ctx, KP_PARM4);
	case 5: return KP_WORD(ctx, KP_PARM5);
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Slab caches                                                         */

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

/*
 * page_of returns the struct page of a linear-map address, or 0 before
 * calibration.
 */
static __always_inline __u64 page_of(__u64 addr)
{
	__u64 c = vm_page_c;
	if (!c)
		return 0;
	return c + (addr >> page_shift) * bpf_core_type_size(struct page);
}

/*
 * slab_cache_of returns the kmem_cache that a slab page (or any page of a
 * multi-page slab) belongs to, without checking that it is a slab page.
 */
static __always_inline __u64 slab_cache_of(__u64 pg)
{
	/*
	 * A tail page's compound_head (compound_info from 7.0) has bit 0 set and
	 * is the head page's address + 1, or, where the kernel stores a mask
	 * instead (7.0+, power-of-2 struct page), the mask that gives the head
	 * page's address from the tail's.
	 */
	unsigned long info = 0;
	if (bpf_core_field_exists(struct page, compound_head))
		bpf_probe_read_kernel(&info, sizeof(info),
				      (void *)pg + bpf_core_field_offset(struct page, compound_head));
	else if (bpf_core_field_exists(struct page___info, compound_info))
		bpf_probe_read_kernel(&info, sizeof(info),
				      (void *)pg + bpf_core_field_offset(struct page___info, compound_info));
	if (info & 1) {
		__u64 head = info - 1;
		if (head <= pg && pg - head < (1ULL << 12) * bpf_core_type_size(struct page))
			pg = head;
		else
			pg &= info;
	}
	__u64 s = 0;
	if (bpf_core_type_exists(struct slab))
		bpf_probe_read_kernel(&s, sizeof(s), (void *)pg + bpf_core_field_offset(struct slab, slab_cache));
	else
		bpf_probe_read_kernel(&s, sizeof(s), (void *)pg + bpf_core_field_offset(struct page, slab_cache));
	return s;
}

/*
 * obj_cache returns the kmem_cache of a slab object, or 0 (counted) when it
 * cannot be found. Callers pass only objects known to come from a slab cache.
 */
static __always_inline __u64 obj_cache(__u64 obj)
{
	__u64 pg = page_of(obj);
	__u64 s = pg ? slab_cache_of(pg) : 0;
	if (!s)
		count(C_CACHE_UNRESOLVED);
	return s;
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
	if (alloc > kmalloc_max)
		return KMALLOC_ID | (variant << 16);
	return KMALLOC_ID | (variant << 16) | alloc;
}

/* large_bytes is what the page allocator hands out for a large kmalloc. */
static __always_inline __u64 large_bytes(__u64 size)
{
	__u64 b = 1ULL << page_shift;
	for (int i = 0; i < 24; i++) {
		if (b >= size)
			break;
		b <<= 1;
	}
	return b;
}

/* ------------------------------------------------------------------ */
/* Filters and stacks                                                  */

/*
 * The memory cgroup the current task's kernel allocations are charged to,
 * as the kernel picks it (get_mem_cgroup_from_current, current_obj_cgroup):
 * the memcg the kernel made active for a section (set_active_memcg), else
 * the task's own. Its css->cgroup is the cgroup in the hierarchy the memory
 * controller is on, v1 or v2. NULL without a memory controller (CONFIG_MEMCG
 * off). Probe reads: for kernels without bpf_get_current_task_btf, and for
 * --memcg.
 */
static __always_inline struct cgroup_subsys_state *current_memcg_css(void)
{
	if (!bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id))
		return NULL;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	if (bpf_core_field_exists(task->active_memcg)) {
		struct mem_cgroup *m = BPF_CORE_READ(task, active_memcg);
		if (m)
			return (struct cgroup_subsys_state *)__builtin_preserve_access_index(&m->css);
	}
	struct css_set *cs = BPF_CORE_READ(task, cgroups);
	struct cgroup_subsys_state *css = NULL;
	int id = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
	if (id < 0 || id >= 64)
		return NULL;
	bpf_core_read(&css, sizeof(css), &cs->subsys[id]);
	return css;
}

/* task_memcg_id is the id of the memory cgroup current_memcg_css names, read with plain loads. */
static __always_inline __u64 task_memcg_id(struct task_struct *task)
{
	if (!bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id))
		return 0;
	if (bpf_core_field_exists(task->active_memcg)) {
		struct mem_cgroup *m = task->active_memcg;
		if (m)
			return m->css.cgroup->kn->id;
	}
	return task->cgroups->subsys[bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id)]->cgroup->kn->id;
}

/* Deeper memory cgroups than this are not matched by --memcg. */
#define MEMCG_MAX_DEPTH 32

/* memcg_passes: --memcg's filter: the charged memcg is filter_memcg or below it. */
static __always_inline bool memcg_passes(void)
{
	struct cgroup_subsys_state *css = current_memcg_css();
	for (int i = 0; i < MEMCG_MAX_DEPTH && css; i++) {
		if (BPF_CORE_READ(css, cgroup, kn, id) == filter_memcg)
			return true;
		css = BPF_CORE_READ(css, parent);
	}
	return false;
}

/* Filters that need the task. Returns false to skip (counted). */
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
	if (filter_tree && !bpf_map_lookup_elem(&tree, &tgid)) {
		count(C_FILTERED);
		return false;
	}
	if (filter_memcg && !memcg_passes()) {
		count(C_FILTERED);
		return false;
	}
	return true;
}

/* task_passes is pass_task_filters without counting. */
static __always_inline bool task_passes(__u32 tgid)
{
	if (self_tgid && tgid == self_tgid)
		return false;
	if (filter_tgid && tgid != filter_tgid)
		return false;
	if (filter_cgroup && bpf_current_task_under_cgroup(&cgroup_filter, 0) != 1)
		return false;
	if (filter_tree && !bpf_map_lookup_elem(&tree, &tgid))
		return false;
	if (filter_memcg && !memcg_passes())
		return false;
	return true;
}

/* admit applies the task filters and the sampling. Returns false to skip. */
static __always_inline bool admit(__u32 tgid)
{
	if (!pass_task_filters(tgid))
		return false;
	if (trace_mode == MODE_SAMPLE && sample_every > 1) {
		/* Uniform 1-in-N: unbiased once values are scaled by N. */
		if (bpf_get_prandom_u32() % sample_every != 0) {
			count(C_SAMPLED_OUT);
			return false;
		}
	}
	return true;
}

/*
 * slab_filters applies --cache and --min-size to a slab allocation whose
 * cache is known; it fills ev->alloc from the cache when the hook did not
 * give the size and a filter needs it. Returns false to skip (counted).
 */
static __always_inline bool slab_filters(struct alloc_ev *ev, bool cache_is_ptr)
{
	if (!cache_filter_n && !min_size)
		return true;
	if (cache_is_ptr && ev->cache) {
		struct cache_info *ci = cache_lookup((struct kmem_cache *)ev->cache);
		if (cache_filter_n && (!ci || !ci->allowed)) {
			count(C_FILTERED);
			return false;
		}
		if (ci && !ev->alloc && min_size)
			ev->alloc = ci->size;
	} else if (cache_filter_n) {
		/* User space registered every kmalloc id with its verdict. */
		struct cache_info *ci = bpf_map_lookup_elem(&caches, &ev->cache);
		if (!ci || !ci->allowed) {
			count(C_FILTERED);
			return false;
		}
	}
	if (min_size && ev->alloc < min_size) {
		count(C_FILTERED);
		return false;
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

/*
 * walk_stack records the current kernel stack. A = 0 (kernels without
 * atomics) has no second-chance store: its slots are claimed with fetch-add.
 */
static __always_inline __s64 walk_stack(void *ctx, const int A)
{
	long id = bpf_get_stackid(ctx, &stacks, stack_flags);
	count(C_WALKED);
	if (id >= 0)
		return id;
	if (id == -EEXIST) {
		if (A)
			return second_chance_stack(ctx);
		count(C_STACK_COLLISION);
		return STACK_LOST_COLLISION;
	}
	if (id == -ENOMEM) {
		count(C_STACK_FULL);
		return STACK_LOST_FULL;
	}
	count(C_STACK_FAULT);
	return STACK_LOST_WALK;
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
 * decide_stack walks the stack if the tracking mode wants one for this
 * allocation: always (full, sample), or at hot call sites (adaptive), where it
 * also counts the allocation for its site.
 */
static __always_inline __s64 decide_stack(void *ctx, __u64 site, const int A)
{
	if (trace_mode == MODE_COUNT)
		return STACK_NOT_WALKED;
	if (trace_mode != MODE_ADAPTIVE)
		return walk_stack(ctx, A);
	__u32 si = site_of(site);
	struct site_state *st = bpf_map_lookup_elem(&sites, &si);
	if (!st)
		return STACK_NOT_WALKED;
	__s64 allocs;
	if (A) {
		allocs = __sync_fetch_and_add(&st->allocs, 1) + 1;
	} else {
		__sync_fetch_and_add(&st->allocs, 1); /* result unused: no BPF_FETCH */
		allocs = st->allocs;
	}
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
				return STACK_NOT_WALKED;
			}
		}
		return walk_stack(ctx, A);
	}
	if (out < arm)
		return STACK_NOT_WALKED;
	bool won;
	if (A) {
		won = __sync_val_compare_and_swap(&st->hot, 0, 1) == 0;
	} else {
		won = st->hot == 0;
		st->hot = 1;
	}
	if (won) {
		count(C_HOT_SITES);
		st->w_allocs = allocs;
		st->w_frees = frees;
	}
	return walk_stack(ctx, A);
}

/* site_freed counts a free for an adaptive call site. */
static __always_inline void site_freed(__u64 site)
{
	if (trace_mode != MODE_ADAPTIVE)
		return;
	__u32 si = site_of(site);
	struct site_state *st = bpf_map_lookup_elem(&sites, &si);
	if (st)
		__sync_fetch_and_add(&st->frees, 1); /* result unused: plain XADD, every kernel */
}

/* cache_stat_add counts for cache; it returns true when the cache was new to cache_stats. */
static __always_inline bool cache_stat_add(__u64 cache, int alloc, __u64 bytes)
{
	bool added = false;
	struct cache_stat *cs = bpf_map_lookup_elem(&cache_stats, &cache);
	if (!cs) {
		struct cache_stat init = {};
		added = bpf_map_update_elem(&cache_stats, &cache, &init, BPF_NOEXIST) == 0;
		cs = bpf_map_lookup_elem(&cache_stats, &cache);
		if (!cs)
			return added;
	}
	/*
	 * Atomic adds: a program in an interrupt may count on this CPU
	 * meanwhile. No add of a constant 0, which the compiler turns into an
	 * atomic or, which kernels before 5.12 do not have.
	 */
	if (alloc) {
		__sync_fetch_and_add(&cs->allocs, 1);
		if (bytes)
			__sync_fetch_and_add(&cs->bytes, bytes);
	} else {
		__sync_fetch_and_add(&cs->frees, 1);
		if (bytes)
			__sync_fetch_and_add(&cs->freed_bytes, bytes);
	}
	return added;
}

/*
 * missed_free accounts for a record replaced by a new allocation at the same
 * pointer: its free was never seen (a free path without a hook).
 */
static __always_inline void missed_free(struct alloc_info *old)
{
	count(C_ALLOC_TRACKED);
	site_freed(old->site);
	__u64 cache = old->cache;
	__u64 *n = bpf_map_lookup_elem(&missed_frees, &cache);
	if (n) {
		__sync_fetch_and_add(n, 1);
		return;
	}
	__u64 one = 1;
	if (bpf_map_update_elem(&missed_frees, &cache, &one, BPF_NOEXIST) == -EEXIST) {
		n = bpf_map_lookup_elem(&missed_frees, &cache);
		if (n)
			__sync_fetch_and_add(n, 1);
	}
}

/*
 * nested reports whether this allocation was just recorded on this CPU by
 * the same task: an allocator function called by another hooked one (kprobe
 * and fentry modes), which must count once.
 */
static __always_inline bool nested(__u64 key, __u64 pid_tgid)
{
	if (!dedupe_nested)
		return false;
	__u32 zero = 0;
	struct last_alloc *l = bpf_map_lookup_elem(&last_allocs, &zero);
	if (!l)
		return false;
	if (l->key == key && l->pid_tgid == pid_tgid) {
		count(C_NESTED);
		return true;
	}
	l->key = key;
	l->pid_tgid = pid_tgid;
	return false;
}

/*
 * table_claim claims a slot for key in the array table and returns its
 * record, or NULL when the bucket is full. A slot already holding key (a
 * missed free) is reused.
 */
static __always_inline struct alloc_info *table_claim(__u64 key)
{
	__u32 b = bucket_of(key);
	struct bucket *bk = bpf_map_lookup_elem(&table_keys, &b);
	if (!bk)
		return NULL;
	__u32 slot = BUCKET_WAYS;
	bool replaced = false;
#pragma unroll
	for (int i = 0; i < BUCKET_WAYS; i++) {
		if (bk->key[i] == key) {
			slot = i;
			replaced = true;
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
	__u32 idx = b * BUCKET_WAYS + slot;
	struct alloc_info *v = bpf_map_lookup_elem(&table_recs, &idx);
	if (v && replaced)
		missed_free(v);
	count(C_TRACKED);
	return v;
}

/* The cgroup v2 id of a task, as bpf_get_current_cgroup_id gives it, without the call. */
static __always_inline __u64 task_cgroup_id(struct task_struct *task)
{
	if (!bpf_core_field_exists(task->cgroups))
		return 0;
	return task->cgroups->dfl_cgrp->kn->id;
}

/*
 * fill_record writes an allocation's record. task is the current task
 * (kernels with bpf_get_current_task_btf) or NULL: its fields are plain
 * loads, cheaper than a helper call each.
 */
static __always_inline void fill_record(struct alloc_info *v, struct alloc_ev *ev, __u32 tgid, __s64 stack_id,
					struct task_struct *task)
{
	/* User space ticks clock_ns every CLOCK_TICK; reading it costs one load. */
	v->ts = clock_ns;
	v->cache = ev->cache;
	v->site = ev->site;
	v->stack_id = stack_id;
	v->tgid = tgid;
	v->bytes_req = ev->req;
	v->bytes_alloc = ev->alloc;
	v->gfp = ev->gfp;
	v->kind = ev->kind;
	v->hook = ev->hook;
	v->accounted = ev->accounted;
	v->order = ev->order;
	if (have_task_btf) {
		if (!task)
			task = bpf_get_current_task_btf();
		v->cgroup = task_cgroup_id(task);
		v->memcg = task_memcg_id(task);
		__builtin_memcpy(v->comm, task->comm, sizeof(v->comm));
	} else {
		v->cgroup = bpf_get_current_cgroup_id();
		v->memcg = BPF_CORE_READ(current_memcg_css(), cgroup, kn, id);
		bpf_get_current_comm(v->comm, sizeof(v->comm));
	}
}

static __always_inline void add_totals(struct alloc_info *v)
{
	struct totals_key tk = {};
	tk.stack_id = v->stack_id;
	tk.cache = v->cache;
	tk.cgroup = v->cgroup;
	tk.memcg = v->memcg;
	tk.tgid = v->tgid;
	tk.kind = v->kind;
	if (v->kind == KIND_SLAB)
		tk.fn = v->order;
	__builtin_memcpy(tk.comm, v->comm, sizeof(tk.comm));
	__u64 alloc = v->bytes_alloc;
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

/*
 * Count mode (top): slab objects are counted for their cache, allocations
 * and frees alike, and never recorded. A free finds its cache from the hook
 * (kmem_cache_free's s) or from the object's slab, and counts whenever the
 * object was allocated. Only large kmallocs (pages, no cache) are recorded,
 * and found again by their free.
 */
static __always_inline bool counting(__u8 kind)
{
	return trace_mode == MODE_COUNT && kind == KIND_SLAB;
}

/*
 * count_alloc counts a slab allocation for its cache; false: record it
 * instead (kmalloc-large, or a cache that could not be read), for its free
 * to find.
 */
static __always_inline bool count_alloc(struct alloc_ev *ev)
{
	if (ev->keep || !ev->cache)
		return false;
	/*
	 * A cache first seen here (made after the start's registration) is
	 * registered: a free that reads its cache from the object trusts only
	 * known caches.
	 */
	if (cache_stat_add(ev->cache, 1, ev->alloc))
		cache_lookup((struct kmem_cache *)ev->cache);
	count(C_COUNTED_ALLOCS);
	return true;
}

static __always_inline void count_free(__u64 cache)
{
	cache_stat_add(cache, 0, 0);
	count(C_COUNTED_FREES);
}

/*
 * known_obj_cache is, for count mode, the cache read from a freed object's
 * slab if it is a known cache: a large kmalloc's page holds no cache.
 */
static __always_inline __u64 known_obj_cache(__u64 ptr)
{
	__u64 pg = page_of(ptr);
	__u64 s = pg ? slab_cache_of(pg) : 0;
	return s && bpf_map_lookup_elem(&caches, &s) ? s : 0;
}

/*
 * free_not_tracked ends a free that found no record: untracked, or in count
 * mode a slab free whose cache was not found.
 */
static __always_inline void free_not_tracked(__u8 kind, __u32 untracked)
{
	count(counting(kind) ? C_FREE_UNRESOLVED : untracked);
}

/*
 * store_alloc inserts one admitted allocation and walks its stack unless the
 * hook walked it (ev->stack_id != STACK_UNSET).
 */
static __always_inline void store_alloc(void *ctx, struct alloc_ev *ev, __u32 tgid, struct task_struct *task,
					const int A)
{
	if (counting(ev->kind) && count_alloc(ev))
		return;
	__u64 key = (ev->ptr << 2) | ev->kind;
	__s64 stack_id = ev->stack_id;
	if (A) {
		struct alloc_info *v = table_claim(key);
		if (!v)
			return;
		if (stack_id == STACK_UNSET)
			stack_id = decide_stack(ctx, ev->site, A);
		fill_record(v, ev, tgid, stack_id, task);
		if (count_caches)
			cache_stat_add(ev->cache, 1, ev->alloc);
		if (keep_totals)
			add_totals(v);
		return;
	}
	if (stack_id == STACK_UNSET)
		stack_id = decide_stack(ctx, ev->site, A);
	struct alloc_info rec = {};
	fill_record(&rec, ev, tgid, stack_id, task);
	struct alloc_info *old = bpf_map_lookup_elem(&table_hash, &key);
	if (old)
		missed_free(old);
	if (bpf_map_update_elem(&table_hash, &key, &rec, BPF_ANY)) {
		count(C_MAP_FULL);
		return;
	}
	count(C_TRACKED);
	if (count_caches)
		cache_stat_add(ev->cache, 1, ev->alloc);
	if (keep_totals)
		add_totals(&rec);
}

/*
 * record_alloc records one allocation. Callers have counted the event,
 * checked the pointer and applied the cache and size filters; the task
 * filters run here, before the stack walk, which is the expensive part.
 */
static __always_inline void record_alloc(void *ctx, struct alloc_ev *ev, const int A)
{
	struct task_struct *task = NULL;
	__u32 tgid;
	if (have_task_btf) {
		task = bpf_get_current_task_btf();
		tgid = task->tgid;
	} else {
		tgid = bpf_get_current_pid_tgid() >> 32;
	}
	if (!admit(tgid))
		return;
	ev->stack_id = STACK_UNSET;
	store_alloc(ctx, ev, tgid, task, A);
}

/*
 * forget_freed clears this CPU's last allocation when it is freed: a new
 * allocation at the same address by the same task is then not taken for a
 * nested call.
 */
static __always_inline void forget_freed(__u64 key)
{
	if (!dedupe_nested)
		return;
	__u32 zero = 0;
	struct last_alloc *l = bpf_map_lookup_elem(&last_allocs, &zero);
	if (l && l->key == key)
		l->key = 0;
}

/* free_event deletes a freed allocation, or counts it (count mode). */
static __always_inline void free_event(__u64 ptr, __u64 key, __u8 kind, __u32 untracked, const int A, __u64 cache)
{
	forget_freed(key);
	if (counting(kind)) {
		/* Its cache from the hook, else from its slab; the table holds only large kmallocs. */
		if (!cache)
			cache = known_obj_cache(ptr);
		if (cache) {
			count_free(cache);
			return;
		}
	}
	if (!A) {
		struct alloc_info *v = bpf_map_lookup_elem(&table_hash, &key);
		if (!v) {
			free_not_tracked(kind, untracked);
			return;
		}
		site_freed(v->site);
		if (count_caches)
			cache_stat_add(v->cache, 0, v->bytes_alloc);
		bpf_map_delete_elem(&table_hash, &key);
		count(C_FREED);
		return;
	}
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
				if (v) {
					site_freed(v->site);
					if (count_caches)
						cache_stat_add(v->cache, 0, v->bytes_alloc);
				}
			}
			bk->key[i] = 0;
			count(C_FREED);
			return;
		}
	}
	free_not_tracked(kind, untracked);
}

/*
 * record_free handles a free event of hook (NR_HOOKS: an object of a bulk
 * free, whose call was guarded as a whole): the program that handles it
 * counts the event and its outcome. cache is the object's cache where the
 * hook passes it (count mode), else 0.
 */
static __always_inline void record_free(__u64 ptr, __u8 kind, __u32 untracked, __u32 hook, const int A, const int role,
					__u64 cache)
{
	/* kfree(NULL) is an event too: its key is one no object has. */
	__u64 key = ptr ? (ptr << 2) | kind : ~0ULL;
	bool skip = false;
	struct free_guard *g = hook < NR_HOOKS ? guard_enter(hook, key, role, &skip) : NULL;
	if (!skip) {
		if (hook < NR_HOOKS)
			count(hook);
		if (ptr)
			free_event(ptr, key, kind, untracked, A, cache);
		else
			count(C_FREE_NULL);
	}
	guard_exit(g, role);
}

/* ------------------------------------------------------------------ */
/* Event handlers shared by the attach modes                           */

/* A kmem_cache allocation; s is 0 when the hook does not pass the cache. */
static __always_inline void on_cache_alloc(void *ctx, struct alloc_ev *ev, const int A)
{
	count(HOOK_CACHE_ALLOC);
	if (!ev->ptr) {
		count(C_NULL);
		return;
	}
	ev->kind = KIND_SLAB;
	ev->hook = HOOK_CACHE_ALLOC;
	ev->accounted = (ev->gfp & GFP_ACCOUNT) != 0;
	if (!ev->cache)
		ev->cache = obj_cache(ev->ptr);
	if (!slab_filters(ev, true))
		return;
	record_alloc(ctx, ev, A);
}

/* A kmalloc seen by a tracepoint: the bucket size gives the cache id. */
static __always_inline void on_kmalloc(void *ctx, struct alloc_ev *ev, const int A)
{
	count(HOOK_KMALLOC);
	if (!ev->ptr) {
		count(C_NULL);
		return;
	}
	ev->kind = KIND_SLAB;
	ev->hook = HOOK_KMALLOC;
	ev->accounted = (ev->gfp & GFP_ACCOUNT) != 0;
	ev->cache = kmalloc_id(ev->alloc, ev->gfp);
	if (trace_mode == MODE_COUNT) {
		/* The kmalloc cache itself, as kfree finds it (random kmalloc caches included). */
		__u64 s = ev->alloc <= kmalloc_max ? obj_cache(ev->ptr) : 0;
		if (s)
			ev->cache = s;
		else
			ev->keep = 1;
	}
	if (!slab_filters(ev, false))
		return;
	record_alloc(ctx, ev, A);
}

/* Page allocations carry their migrate type in the high nibble of hook. */
#define HOOK_MIGRATE_SHIFT 4

static __always_inline void on_page_alloc(void *ctx, struct alloc_ev *ev, __u32 migratetype, const int A)
{
	count(HOOK_PAGE_ALLOC);
	if (!ev->ptr) {
		count(C_NULL);
		return;
	}
	__u64 bytes = (1ULL << page_shift) << (ev->order & 31);
	if (cache_filter_n || (min_size && bytes < min_size)) {
		count(C_FILTERED);
		return;
	}
	ev->kind = KIND_PAGE;
	ev->hook = HOOK_PAGE_ALLOC | ((migratetype & 0xf) << HOOK_MIGRATE_SHIFT);
	ev->req = ev->alloc = bytes;
	ev->accounted = (ev->gfp & GFP_ACCOUNT) != 0;
	/*
	 * Pages have no cache: their cache id carries what splits their samples
	 * (gfp flags, order, migrate type), so the totals split the same way.
	 */
	ev->cache = PAGE_DETAIL | (__u64)ev->gfp | ((__u64)ev->order << 32) | ((__u64)(migratetype & 0xff) << 40);
	record_alloc(ctx, ev, A);
}

static __always_inline void on_percpu_alloc(void *ctx, struct alloc_ev *ev, const int A)
{
	count(HOOK_PERCPU_ALLOC);
	if (!ev->ptr) {
		count(C_NULL);
		return;
	}
	if (!ev->alloc)
		ev->alloc = ev->req * nr_cpus;
	if (cache_filter_n || (min_size && ev->alloc < min_size)) {
		count(C_FILTERED);
		return;
	}
	ev->kind = KIND_PERCPU;
	ev->hook = HOOK_PERCPU_ALLOC;
	ev->cache = 0;
	ev->accounted = (ev->gfp & GFP_ACCOUNT) != 0;
	record_alloc(ctx, ev, A);
}

/* ------------------------------------------------------------------ */
/* raw_tp and tp_btf                                                    */

/*
 * One program per hook serves raw_tp and tp_btf (the loader loads the same
 * instructions as either type) and every argument list the kernel has used:
 * arg_idx says where each field is. kmem_cache_alloc_node and kmalloc_node
 * (before 6.1) use the programs of kmem_cache_alloc and kmalloc.
 */
#define A_(h, f) arg_idx[h][f]

static __always_inline int do_cache_alloc(__u64 *ctx, const int A)
{
	struct alloc_ev ev = {};
	ev.ptr = ctx_ptr(ctx, A_(HOOK_CACHE_ALLOC, F_PTR));
	ev.site = ctx_arg(ctx, A_(HOOK_CACHE_ALLOC, F_SITE));
	ev.cache = ctx_arg(ctx, A_(HOOK_CACHE_ALLOC, F_CACHE));
	ev.req = ctx_arg(ctx, A_(HOOK_CACHE_ALLOC, F_REQ));
	ev.alloc = ctx_arg(ctx, A_(HOOK_CACHE_ALLOC, F_ALLOC));
	ev.gfp = ctx_arg(ctx, A_(HOOK_CACHE_ALLOC, F_GFP));
	on_cache_alloc(ctx, &ev, A);
	return 0;
}

static __always_inline int do_kmalloc(__u64 *ctx, const int A)
{
	struct alloc_ev ev = {};
	ev.ptr = ctx_ptr(ctx, A_(HOOK_KMALLOC, F_PTR));
	ev.site = ctx_arg(ctx, A_(HOOK_KMALLOC, F_SITE));
	ev.req = ctx_arg(ctx, A_(HOOK_KMALLOC, F_REQ));
	ev.alloc = ctx_arg(ctx, A_(HOOK_KMALLOC, F_ALLOC));
	ev.gfp = ctx_arg(ctx, A_(HOOK_KMALLOC, F_GFP));
	on_kmalloc(ctx, &ev, A);
	return 0;
}

static __always_inline int do_page_alloc(__u64 *ctx, const int A)
{
	struct alloc_ev ev = {};
	ev.ptr = ctx_arg(ctx, A_(HOOK_PAGE_ALLOC, F_PTR));
	ev.order = ctx_arg(ctx, A_(HOOK_PAGE_ALLOC, F_ORDER));
	ev.gfp = ctx_arg(ctx, A_(HOOK_PAGE_ALLOC, F_GFP));
	on_page_alloc(ctx, &ev, ctx_arg(ctx, A_(HOOK_PAGE_ALLOC, F_MIGRATE)), A);
	return 0;
}

static __always_inline int do_pcpu_alloc(__u64 *ctx, const int A)
{
	struct alloc_ev ev = {};
	ev.ptr = ctx_ptr(ctx, A_(HOOK_PERCPU_ALLOC, F_PTR));
	ev.site = ctx_arg(ctx, A_(HOOK_PERCPU_ALLOC, F_SITE));
	ev.req = ctx_arg(ctx, A_(HOOK_PERCPU_ALLOC, F_REQ));
	ev.alloc = ctx_arg(ctx, A_(HOOK_PERCPU_ALLOC, F_ALLOC));
	ev.gfp = ctx_arg(ctx, A_(HOOK_PERCPU_ALLOC, F_GFP));
	on_percpu_alloc(ctx, &ev, A);
	return 0;
}

static __always_inline int kt_free(__u64 *ctx, int hook, __u8 kind, __u32 untracked, const int A, const int role)
{
	__u64 ptr = kind == KIND_PAGE ? ctx_arg(ctx, arg_idx[hook][F_PTR]) : ctx_ptr(ctx, arg_idx[hook][F_PTR]);
	/* kmem_cache_free passes its cache from 6.1: count mode needs no read of the slab. */
	__u64 cache = counting(kind) ? ctx_arg(ctx, arg_idx[hook][F_CACHE]) : 0;
	record_free(ptr, kind, untracked, hook, A, role, cache);
	return 0;
}

/*
 * Each tracing program in both flavours, atomics (A=1) and hash table (A=0),
 * and both roles (primary, backup: _b).
 */
/*
 * Allocation programs have no backup: an allocation nested in its own
 * hook's program is missed (counted by the kernel as a recursion miss on
 * kernels that count them), which undercounts but cannot show a false leak;
 * a missed free would. Their cost per event is kept for what matters more.
 */
#define TRACING_ALLOCS(SFX, A)                 \
	SEC("raw_tp/kmem_cache_alloc")         \
	int kt_cache_alloc##SFX(__u64 *ctx)    \
	{                                      \
		return do_cache_alloc(ctx, A); \
	}                                      \
	SEC("raw_tp/kmalloc")                  \
	int kt_kmalloc##SFX(__u64 *ctx)        \
	{                                      \
		return do_kmalloc(ctx, A);     \
	}                                      \
	SEC("raw_tp/mm_page_alloc")            \
	int kt_page_alloc##SFX(__u64 *ctx)     \
	{                                      \
		return do_page_alloc(ctx, A);  \
	}                                      \
	SEC("raw_tp/percpu_alloc_percpu")      \
	int kt_pcpu_alloc##SFX(__u64 *ctx)     \
	{                                      \
		return do_pcpu_alloc(ctx, A);  \
	}

#define TRACING_ROLE(SFX, A, R)                                                                      \
	SEC("raw_tp/kmem_cache_free")                                                                \
	int kt_cache_free##SFX(__u64 *ctx)                                                           \
	{                                                                                            \
		return kt_free(ctx, HOOK_CACHE_FREE, KIND_SLAB, C_FREE_UNTRACKED_SLAB, A, R);        \
	}                                                                                            \
	SEC("raw_tp/kfree")                                                                          \
	int kt_kfree##SFX(__u64 *ctx)                                                                \
	{                                                                                            \
		return kt_free(ctx, HOOK_KFREE, KIND_SLAB, C_FREE_UNTRACKED_SLAB, A, R);             \
	}                                                                                            \
	SEC("raw_tp/mm_page_free")                                                                   \
	int kt_page_free##SFX(__u64 *ctx)                                                            \
	{                                                                                            \
		return kt_free(ctx, HOOK_PAGE_FREE, KIND_PAGE, C_FREE_UNTRACKED_PAGE, A, R);         \
	}                                                                                            \
	SEC("raw_tp/mm_page_free_batched")                                                           \
	int kt_page_freeb##SFX(__u64 *ctx)                                                           \
	{                                                                                            \
		return kt_free(ctx, HOOK_PAGE_FREE_BATCHED, KIND_PAGE, C_FREE_UNTRACKED_PAGE, A, R); \
	}                                                                                            \
	SEC("raw_tp/percpu_free_percpu")                                                             \
	int kt_pcpu_free##SFX(__u64 *ctx)                                                            \
	{                                                                                            \
		return kt_free(ctx, HOOK_PERCPU_FREE, KIND_PERCPU, C_FREE_UNTRACKED_PERCPU, A, R);   \
	}

TRACING_ALLOCS(, 1)
TRACING_ALLOCS(_na, 0)
TRACING_ROLE(, 1, ROLE_PRIMARY)
TRACING_ROLE(_b, 1, ROLE_BACKUP)
TRACING_ROLE(_na, 0, ROLE_PRIMARY)
TRACING_ROLE(_na_b, 0, ROLE_BACKUP)

/* ------------------------------------------------------------------ */
/* Classic tracepoints                                                 */

/*
 * The perf trace record, read at the offsets of the tracepoint's format
 * (tp_off, tp_size). Where the record names the cache, cache ids are a hash
 * of the name; else the cache is read from the object. Pages are keyed by
 * pfn + 1.
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

#define T_(h, f) tp_field(ctx, h, f)

/* tp_cache_name returns the hash id of the cache the record names, registering it. */
static __always_inline __u64 tp_cache_name(void *ctx, __u64 req, __u64 alloc)
{
	char name[CACHE_NAME_LEN] = {};
	__u32 loc = T_(HOOK_CACHE_ALLOC, F_NAME);
	bpf_probe_read_kernel_str(name, sizeof(name), ctx + (loc & 0xffff));
	__u64 id = fnv1a(name);
	struct cache_info *ci = bpf_map_lookup_elem(&caches, &id);
	if (ci)
		return id;
	struct cache_info n = {};
	__builtin_memcpy(n.name, name, sizeof(n.name));
	n.object_size = req;
	n.size = alloc;
	n.allowed = name_allowed(n.name);
	bpf_map_update_elem(&caches, &id, &n, BPF_NOEXIST);
	if (!bpf_map_lookup_elem(&caches, &id))
		count(C_CACHES_FULL);
	return id;
}

static __always_inline int tpc_cache_alloc(void *ctx, const int A)
{
	count(HOOK_CACHE_ALLOC);
	struct alloc_ev ev = {.kind = KIND_SLAB, .hook = HOOK_CACHE_ALLOC};
	ev.ptr = T_(HOOK_CACHE_ALLOC, F_PTR);
	if (!ev.ptr) {
		count(C_NULL);
		return 0;
	}
	ev.site = T_(HOOK_CACHE_ALLOC, F_SITE);
	ev.req = T_(HOOK_CACHE_ALLOC, F_REQ);
	ev.alloc = T_(HOOK_CACHE_ALLOC, F_ALLOC);
	ev.gfp = T_(HOOK_CACHE_ALLOC, F_GFP);
	ev.accounted = (ev.gfp & GFP_ACCOUNT) != 0;
	if (tp_off[HOOK_CACHE_ALLOC][F_ACCOUNTED])
		ev.accounted = T_(HOOK_CACHE_ALLOC, F_ACCOUNTED) != 0;
	/* Count mode keys caches by pointer, as the frees find them. */
	bool named = tp_off[HOOK_CACHE_ALLOC][F_NAME] != 0 && trace_mode != MODE_COUNT;
	if (named)
		ev.cache = tp_cache_name(ctx, ev.req, ev.alloc);
	else
		ev.cache = obj_cache(ev.ptr);
	if (named && cache_filter_n) {
		struct cache_info *ci = bpf_map_lookup_elem(&caches, &ev.cache);
		if (!ci || !ci->allowed) {
			count(C_FILTERED);
			return 0;
		}
	} else if (!named && !slab_filters(&ev, true)) {
		return 0;
	}
	if (min_size && ev.alloc < min_size) {
		count(C_FILTERED);
		return 0;
	}
	record_alloc(ctx, &ev, A);
	return 0;
}

static __always_inline int tpc_kmalloc(void *ctx, const int A)
{
	struct alloc_ev ev = {};
	ev.ptr = T_(HOOK_KMALLOC, F_PTR);
	ev.site = T_(HOOK_KMALLOC, F_SITE);
	ev.req = T_(HOOK_KMALLOC, F_REQ);
	ev.alloc = T_(HOOK_KMALLOC, F_ALLOC);
	ev.gfp = T_(HOOK_KMALLOC, F_GFP);
	on_kmalloc(ctx, &ev, A);
	return 0;
}

static __always_inline int tpc_page_alloc(void *ctx, const int A)
{
	struct alloc_ev ev = {};
	/* pfn is -1UL when the allocation failed. */
	__u64 pfn = T_(HOOK_PAGE_ALLOC, F_PTR);
	ev.ptr = pfn == (__u64)-1 ? 0 : pfn + 1;
	ev.order = T_(HOOK_PAGE_ALLOC, F_ORDER);
	ev.gfp = T_(HOOK_PAGE_ALLOC, F_GFP);
	on_page_alloc(ctx, &ev, T_(HOOK_PAGE_ALLOC, F_MIGRATE), A);
	return 0;
}

static __always_inline int tpc_pcpu_alloc(void *ctx, const int A)
{
	struct alloc_ev ev = {};
	ev.ptr = T_(HOOK_PERCPU_ALLOC, F_PTR);
	ev.site = T_(HOOK_PERCPU_ALLOC, F_SITE);
	ev.req = T_(HOOK_PERCPU_ALLOC, F_REQ);
	ev.alloc = T_(HOOK_PERCPU_ALLOC, F_ALLOC);
	ev.gfp = T_(HOOK_PERCPU_ALLOC, F_GFP);
	on_percpu_alloc(ctx, &ev, A);
	return 0;
}

static __always_inline int tpc_free(void *ctx, int hook, __u8 kind, __u32 untracked, const int A)
{
	count(hook);
	__u64 ptr = tp_field(ctx, hook, F_PTR);
	if (kind == KIND_PAGE)
		ptr += 1; /* pfn + 1: pfn 0 is a page */
	record_free(ptr, kind, untracked, hook, A, ROLE_PRIMARY, 0);
	return 0;
}

#define CLASSIC_PROGRAMS(SFX, A)                                                                   \
	SEC("tracepoint/kmem/kmem_cache_alloc")                                                    \
	int tp_cache_alloc##SFX(void *ctx)                                                         \
	{                                                                                          \
		return tpc_cache_alloc(ctx, A);                                                    \
	}                                                                                          \
	SEC("tracepoint/kmem/kmalloc")                                                             \
	int tp_kmalloc##SFX(void *ctx)                                                             \
	{                                                                                          \
		return tpc_kmalloc(ctx, A);                                                        \
	}                                                                                          \
	SEC("tracepoint/kmem/mm_page_alloc")                                                       \
	int tp_page_alloc##SFX(void *ctx)                                                          \
	{                                                                                          \
		return tpc_page_alloc(ctx, A);                                                     \
	}                                                                                          \
	SEC("tracepoint/percpu/percpu_alloc_percpu")                                               \
	int tp_pcpu_alloc##SFX(void *ctx)                                                          \
	{                                                                                          \
		return tpc_pcpu_alloc(ctx, A);                                                     \
	}                                                                                          \
	SEC("tracepoint/kmem/kmem_cache_free")                                                     \
	int tp_cache_free##SFX(void *ctx)                                                          \
	{                                                                                          \
		return tpc_free(ctx, HOOK_CACHE_FREE, KIND_SLAB, C_FREE_UNTRACKED_SLAB, A);        \
	}                                                                                          \
	SEC("tracepoint/kmem/kfree")                                                               \
	int tp_kfree##SFX(void *ctx)                                                               \
	{                                                                                          \
		return tpc_free(ctx, HOOK_KFREE, KIND_SLAB, C_FREE_UNTRACKED_SLAB, A);             \
	}                                                                                          \
	SEC("tracepoint/kmem/mm_page_free")                                                        \
	int tp_page_free##SFX(void *ctx)                                                           \
	{                                                                                          \
		return tpc_free(ctx, HOOK_PAGE_FREE, KIND_PAGE, C_FREE_UNTRACKED_PAGE, A);         \
	}                                                                                          \
	SEC("tracepoint/kmem/mm_page_free_batched")                                                \
	int tp_page_freeb##SFX(void *ctx)                                                          \
	{                                                                                          \
		return tpc_free(ctx, HOOK_PAGE_FREE_BATCHED, KIND_PAGE, C_FREE_UNTRACKED_PAGE, A); \
	}                                                                                          \
	SEC("tracepoint/percpu/percpu_free_percpu")                                                \
	int tp_pcpu_free##SFX(void *ctx)                                                           \
	{                                                                                          \
		return tpc_free(ctx, HOOK_PERCPU_FREE, KIND_PERCPU, C_FREE_UNTRACKED_PERCPU, A);   \
	}

CLASSIC_PROGRAMS(, 1)
CLASSIC_PROGRAMS(_na, 0)

/* ------------------------------------------------------------------ */
/* Allocator functions: kprobe and fentry                              */

/*
 * fn_finish completes an allocation seen at an allocator function's return:
 * the cache (from the argument, from the object, or kmalloc-large) and the
 * filters that need it. size is the requested size (kmalloc family).
 */
static __always_inline bool fn_finish(struct alloc_ev *ev, int slot, __u64 size)
{
	ev->kind = KIND_SLAB;
	ev->accounted = (ev->gfp & GFP_ACCOUNT) != 0;
	if (fn_alloc[slot].hook == HOOK_CACHE_ALLOC) {
		if (!ev->cache)
			ev->cache = obj_cache(ev->ptr);
		return slab_filters(ev, true);
	}
	ev->req = size;
	if (fn_alloc[slot].large || size > kmalloc_max) {
		ev->alloc = large_bytes(size);
		ev->cache = kmalloc_id(ev->alloc, ev->gfp);
		ev->keep = 1;
		return slab_filters(ev, false);
	}
	if (!ev->cache)
		ev->cache = obj_cache(ev->ptr);
	return slab_filters(ev, true);
}

/*
 * fx_site returns the allocator's return address into its caller. An fexit
 * program's context lies in its trampoline's stack frame, below the
 * trampoline's own return address (into the allocator, just past its start)
 * and, a fixed number of words above that, the allocator's return address.
 * The first event of each slot finds the first of the two by its value.
 */
#if defined(__TARGET_ARCH_arm64)
#define FX_PARENT_DELTA 2 /* [self ip] [fp] [parent ip] */
#else
#define FX_PARENT_DELTA 1 /* [self ip] [parent ip] */
#endif
#define FX_SCAN_WORDS 16

static __always_inline __u64 fx_site(__u64 *ctx, int slot)
{
	__u32 base = fn_alloc[slot].nargs + 1; /* words of arguments and return value */
	__u8 w = fx_site_word[slot];
	__u64 v = 0;
	if (w == 0xff)
		return 0;
	if (w == 0) {
		__u64 words[FX_SCAN_WORDS] = {};
		bpf_probe_read_kernel(words, sizeof(words), (void *)ctx + 8 * base);
		__u64 fn = fn_addr[slot];
		w = 0xff;
#pragma unroll
		for (int i = 0; i + FX_PARENT_DELTA < FX_SCAN_WORDS; i++) {
			if (words[i] > fn && words[i] < fn + 32) {
				w = base + i + FX_PARENT_DELTA;
				break;
			}
		}
		fx_site_word[slot] = w;
		if (w == 0xff)
			return 0;
	}
	bpf_probe_read_kernel(&v, sizeof(v), (void *)ctx + 8 * (w & 0x3f));
	return v;
}

/* fexit: the arguments and the return value in one program, no pairing. */
static __always_inline int fx_alloc(__u64 *ctx, const int slot, const int A)
{
	count(fn_alloc[slot].hook);
	struct alloc_ev ev = {};
	ev.ptr = ctx_ptr(ctx, fn_alloc[slot].nargs + 1);
	if (!ev.ptr) {
		count(C_NULL);
		return 0;
	}
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (nested((ev.ptr << 2) | KIND_SLAB, pid_tgid))
		return 0;
	ev.hook = fn_alloc[slot].hook;
	ev.order = slot + 1; /* user space puts the allocator function at the stack's leaf */
	ev.gfp = ctx_arg(ctx, fn_alloc[slot].gfp);
	ev.cache = ctx_arg(ctx, fn_alloc[slot].cache);
	if (!fn_finish(&ev, slot, ctx_arg(ctx, fn_alloc[slot].size)))
		return 0;
	__u32 tgid = pid_tgid >> 32;
	if (!admit(tgid))
		return 0;
	/* The call site is needed only to decide about the stack. */
	if (trace_mode == MODE_ADAPTIVE)
		ev.site = fx_site(ctx, slot);
	ev.stack_id = STACK_UNSET;
	store_alloc(ctx, &ev, tgid, NULL, A);
	return 0;
}

/*
 * kprobe: the entry saves the arguments and walks the stack (at the entry the
 * allocator is the leaf frame, and the unwinder need not cross the
 * kretprobe trampoline, which kernels before 5.16 cannot); the return probe
 * has the pointer. The loader attaches each kretprobe before its kprobe: the
 * kretprobe replaces the return address on the stack, and the kprobe
 * registered last runs first, so it still sees the caller. Entries are keyed
 * by the stack pointer, unique per call even when an interrupt or a nested
 * allocator call runs on the same thread in between.
 */
#if defined(__TARGET_ARCH_x86)
#define KRET_SP_ADJUST 8 /* the return popped the return address */
#else
#define KRET_SP_ADJUST 0
#endif

static __always_inline int kp_alloc(struct pt_regs *ctx, const int slot, const int A)
{
	count(fn_alloc[slot].hook);
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!pass_task_filters(pid_tgid >> 32))
		return 0;
	__u64 sp = PT_REGS_SP(ctx);
	struct kp_args a = {};
	if (trace_mode == MODE_SAMPLE && sample_every > 1 && bpf_get_prandom_u32() % sample_every != 0) {
		/* The return must know this call was left out on purpose. */
		count(C_SAMPLED_OUT);
		a.sampled_out = 1;
		bpf_map_update_elem(&kp_pending, &sp, &a, BPF_ANY);
		return 0;
	}
	a.slot = slot;
	a.ev.hook = fn_alloc[slot].hook;
	a.ev.order = slot + 1;
	a.ev.gfp = kp_arg(ctx, fn_alloc[slot].gfp);
	a.ev.cache = kp_arg(ctx, fn_alloc[slot].cache);
	a.size = kp_arg(ctx, fn_alloc[slot].size);
	BPF_KPROBE_READ_RET_IP(a.ev.site, ctx);
	a.ev.stack_id = decide_stack(ctx, a.ev.site, A);
	struct kp_args *old = bpf_map_lookup_elem(&kp_pending, &sp);
	if (old) /* a call whose return was never seen left it */
		count(C_RETURN_MISSED);
	bpf_map_update_elem(&kp_pending, &sp, &a, BPF_ANY);
	return 0;
}

static __always_inline int do_kr_alloc(struct pt_regs *ctx, const int A)
{
	__u64 sp = PT_REGS_SP(ctx) - KRET_SP_ADJUST;
	struct kp_args *p = bpf_map_lookup_elem(&kp_pending, &sp);
	if (!p) {
		/* Entries of filtered tasks are not saved. */
		if (task_passes(bpf_get_current_pid_tgid() >> 32))
			count(C_RETURN_NO_ENTRY);
		return 0;
	}
	struct kp_args a = *p;
	bpf_map_delete_elem(&kp_pending, &sp);
	if (a.sampled_out)
		return 0;
	int slot = a.slot;
	if (slot < 0 || slot >= NR_FN_SLOTS)
		return 0;
	a.ev.ptr = PT_REGS_RC(ctx);
	if (!a.ev.ptr) {
		count(C_NULL);
		site_freed(a.ev.site); /* decide_stack counted it for its site */
		return 0;
	}
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (nested((a.ev.ptr << 2) | KIND_SLAB, pid_tgid) || !fn_finish(&a.ev, slot, a.size)) {
		site_freed(a.ev.site);
		return 0;
	}
	store_alloc(ctx, &a.ev, pid_tgid >> 32, NULL, A);
	return 0;
}

/* Frees. kmem_cache_free(s, x), kfree(x): cache is s, or 0. */
static __always_inline int fn_free(__u64 ptr, __u64 cache, int hook, const int A, const int role)
{
	record_free(ptr, KIND_SLAB, C_FREE_UNTRACKED_SLAB, hook, A, role, cache);
	return 0;
}

/*
 * kmem_cache_free_bulk(s, size, p): frees size objects with no tracepoint
 * (kfree_bulk, batched kfree_rcu, the maple tree). Objects past MAX_BULK are
 * counted, not looked up. Each object is freed by a global function, which
 * the verifier checks once rather than once per object.
 */
#define MAX_BULK 512
#define BULK_CHUNK 8

/* One object of a bulk free. NR_HOOKS: the bulk call is guarded as a whole, by its array. */
__noinline int bulk_free_one(__u64 ptr)
{
	record_free(ptr, KIND_SLAB, C_FREE_UNTRACKED_SLAB, NR_HOOKS, 1, ROLE_PRIMARY, 0);
	return 0;
}

__noinline int bulk_free_one_na(__u64 ptr)
{
	record_free(ptr, KIND_SLAB, C_FREE_UNTRACKED_SLAB, NR_HOOKS, 0, ROLE_PRIMARY, 0);
	return 0;
}

/* Every object of a bulk free is a free event (HOOK_FREE_BULK counts objects). */
static __always_inline void free_bulk_objects(__u64 n, __u64 p, const int A)
{
	count_n(HOOK_FREE_BULK, n);
	if (n > MAX_BULK) {
		count_n(C_BULK_TRUNCATED, n - MAX_BULK);
		n = MAX_BULK;
	}
	for (int i = 0; i < MAX_BULK / BULK_CHUNK; i++) {
		if (i * BULK_CHUNK >= n)
			break;
		__u64 objs[BULK_CHUNK] = {};
		bpf_probe_read_kernel(objs, sizeof(objs), (void *)p + i * BULK_CHUNK * 8);
#pragma unroll
		for (int j = 0; j < BULK_CHUNK; j++) {
			if (i * BULK_CHUNK + j < n) {
				if (A)
					bulk_free_one(objs[j]);
				else
					bulk_free_one_na(objs[j]);
			}
		}
	}
}

static __always_inline int free_bulk(__u64 n, __u64 p, const int A, const int role)
{
	if (!p)
		return 0;
	bool skip = false;
	struct free_guard *g = guard_enter(HOOK_FREE_BULK, p, role, &skip);
	if (!skip)
		free_bulk_objects(n, p, A);
	guard_exit(g, role);
	return 0;
}

/*
 * kvfree_call_rcu: kfree_rcu() and kvfree_rcu() hand an object over to be
 * freed after an RCU grace period, and no one may use it from then on: that
 * is its free. Later kernels free such objects in batches that no hook sees
 * (RCU sheaves, 6.18+; kfree_bulk before). From 6.12 the object is the second
 * argument; before, kfree_rcu(ptr, field) passes the rcu_head and the
 * field's offset, and kvfree_rcu(ptr) no head and the object.
 */
static __always_inline __u64 rcu_obj(__u64 head, __u64 arg2)
{
	if (rcu_ptr_arg || !head)
		return arg2;
	if (arg2 < 4096)
		return head - arg2;
	return 0;
}

#define FX_SLOT(K, SFX, A)                                       \
	SEC("fexit") int fx_alloc_##K##SFX(__u64 *ctx)           \
	{                                                        \
		return fx_alloc(ctx, K, A);                      \
	}                                                        \
	SEC("kprobe") int kp_alloc_##K##SFX(struct pt_regs *ctx) \
	{                                                        \
		return kp_alloc(ctx, K, A);                      \
	}

#define FE_FREES(SFX, A, R)                                                                          \
	SEC("fentry/kmem_cache_free")                                                                \
	int fe_cache_free##SFX(__u64 *ctx)                                                           \
	{                                                                                            \
		return fn_free(ctx_ptr(ctx, 2), ctx_arg(ctx, 1), HOOK_CACHE_FREE, A, R);             \
	}                                                                                            \
	SEC("fentry/kfree")                                                                          \
	int fe_kfree##SFX(__u64 *ctx)                                                                \
	{                                                                                            \
		return fn_free(ctx_ptr(ctx, 1), 0, HOOK_KFREE, A, R);                                \
	}                                                                                            \
	SEC("fentry/kmem_cache_free_bulk")                                                           \
	int fe_free_bulk##SFX(__u64 *ctx)                                                            \
	{                                                                                            \
		return free_bulk(ctx_arg(ctx, 2), ctx_copy(ctx, 3), A, R);                           \
	}                                                                                            \
	SEC("fentry/kvfree_call_rcu")                                                                \
	int fe_free_rcu##SFX(__u64 *ctx)                                                             \
	{                                                                                            \
		return fn_free(rcu_obj(ctx_copy(ctx, 1), ctx_copy(ctx, 2)), 0, HOOK_FREE_RCU, A, R); \
	}

#define FN_PROGRAMS(SFX, A)                                                                                         \
	FX_SLOT(0, SFX, A)                                                                                          \
	FX_SLOT(1, SFX, A)                                                                                          \
	FX_SLOT(2, SFX, A)                                                                                          \
	FX_SLOT(3, SFX, A)                                                                                          \
	FX_SLOT(4, SFX, A)                                                                                          \
	FX_SLOT(5, SFX, A)                                                                                          \
	FX_SLOT(6, SFX, A)                                                                                          \
	FX_SLOT(7, SFX, A)                                                                                          \
	FX_SLOT(8, SFX, A)                                                                                          \
	FX_SLOT(9, SFX, A)                                                                                          \
	FX_SLOT(10, SFX, A)                                                                                         \
	FX_SLOT(11, SFX, A)                                                                                         \
	FX_SLOT(12, SFX, A)                                                                                         \
	FX_SLOT(13, SFX, A)                                                                                         \
	SEC("kretprobe") int kr_alloc##SFX(struct pt_regs *ctx)                                                     \
	{                                                                                                           \
		return do_kr_alloc(ctx, A);                                                                         \
	}                                                                                                           \
	FE_FREES(SFX, A, ROLE_PRIMARY)                                                                              \
	FE_FREES(SFX##_b, A, ROLE_BACKUP)                                                                           \
	SEC("kprobe/kmem_cache_free")                                                                               \
	int kp_cache_free##SFX(struct pt_regs *ctx)                                                                 \
	{                                                                                                           \
		return fn_free(PT_REGS_PARM2(ctx), PT_REGS_PARM1(ctx), HOOK_CACHE_FREE, A, ROLE_PRIMARY);           \
	}                                                                                                           \
	SEC("kprobe/kfree")                                                                                         \
	int kp_kfree##SFX(struct pt_regs *ctx)                                                                      \
	{                                                                                                           \
		return fn_free(PT_REGS_PARM1(ctx), 0, HOOK_KFREE, A, ROLE_PRIMARY);                                 \
	}                                                                                                           \
	SEC("kprobe/kmem_cache_free_bulk")                                                                          \
	int kp_free_bulk##SFX(struct pt_regs *ctx)                                                                  \
	{                                                                                                           \
		return free_bulk(PT_REGS_PARM2(ctx), PT_REGS_PARM3(ctx), A, ROLE_PRIMARY);                          \
	}                                                                                                           \
	SEC("kprobe/kvfree_call_rcu")                                                                               \
	int kp_free_rcu##SFX(struct pt_regs *ctx)                                                                   \
	{                                                                                                           \
		return fn_free(rcu_obj(PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx)), 0, HOOK_FREE_RCU, A, ROLE_PRIMARY); \
	}

FN_PROGRAMS(, 1)
FN_PROGRAMS(_na, 0)

/* ------------------------------------------------------------------ */
/* Test-run programs (BPF_PROG_TEST_RUN from user space, never attached) */

/*
 * --follow. sched_process_fork(parent, child) and sched_process_exit(p, ...)
 * have passed the task first since they exist; read with CO-RE.
 */
SEC("raw_tp/sched_process_fork")
int tree_fork(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *parent = (struct task_struct *)ctx->args[0];
	struct task_struct *child = (struct task_struct *)ctx->args[1];
	__u32 ptgid = BPF_CORE_READ(parent, tgid);
	if (!bpf_map_lookup_elem(&tree, &ptgid))
		return 0;
	__u32 ctgid = BPF_CORE_READ(child, tgid);
	__u8 one = 1;
	if (bpf_map_update_elem(&tree, &ctgid, &one, BPF_ANY))
		count(C_TREE_FULL);
	return 0;
}

SEC("raw_tp/sched_process_exit")
int tree_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *p = (struct task_struct *)ctx->args[0];
	__u32 tgid = BPF_CORE_READ(p, tgid);
	if (!bpf_map_lookup_elem(&tree, &tgid))
		return 0;
	/* do_exit counts the thread out of signal->live before this event. */
	if (BPF_CORE_READ(p, signal, live.counter) == 0)
		bpf_map_delete_elem(&tree, &tgid);
	return 0;
}

/*
 * cgroup_mkdir keeps the path of every cgroup made in the v2 hierarchy or
 * the memory controller's v1 one, keyed by its id (cgroup_names).
 */
SEC("raw_tp/cgroup_mkdir")
int cgroup_mkdir(struct bpf_raw_tracepoint_args *ctx)
{
	struct cgroup *cgrp = (struct cgroup *)ctx->args[0];
	struct cgroup_name_key k = {};
	k.hierarchy = BPF_CORE_READ(cgrp, root, hierarchy_id);
	if (k.hierarchy != 0 && k.hierarchy != memcg_hierarchy)
		return 0;
	k.id = BPF_CORE_READ(cgrp, kn, id);
	__u32 zero = 0;
	struct cgroup_name *n = bpf_map_lookup_elem(&cgroup_name_buf, &zero);
	if (!n)
		return 0;
	if (bpf_probe_read_kernel_str(n->path, sizeof(n->path), (const char *)ctx->args[1]) <= 0)
		return 0;
	if (bpf_map_update_elem(&cgroup_names, &k, n, BPF_ANY))
		count(C_CGROUP_NAMES_FULL);
	return 0;
}

/*
 * resolve_cache records a cache's name, sizes and flags in the caches map;
 * user space runs it once per kmem_cache pointer found in the records.
 */
SEC("raw_tp")
int resolve_cache(struct bpf_raw_tracepoint_args *ctx)
{
	cache_lookup((struct kmem_cache *)ctx->args[0]);
	return 0;
}

/*
 * register_caches registers every slab cache in the caches map, walking the
 * kernel's list of caches (kmem_cache.list) from the cache of the calling
 * task's task_struct; it leaves how many it found in probe_result. Count
 * mode runs it at start: a free that reads its cache from the object counts
 * only for a registered cache. The list's head is not a cache: the entry it
 * gives is never an object's cache, so it does no harm.
 */
#define MAX_CACHES_WALK 1024

/* One cache of the walk: a global function, which the verifier checks once. */
__noinline int register_cache(__u64 s)
{
	return cache_lookup((struct kmem_cache *)s) != NULL;
}

SEC("raw_tp")
int register_caches(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 first = obj_cache(bpf_get_current_task());
	probe_result = 0;
	if (!first)
		return 0;
	__u64 off = bpf_core_field_offset(struct kmem_cache, list);
	__u64 pos = first + off;
	__u64 n = 0;
	for (int i = 0; i < MAX_CACHES_WALK; i++) {
		__u64 next = 0;
		if (bpf_probe_read_kernel(&next, sizeof(next), (void *)pos) || !next || next == first + off)
			break;
		pos = next;
		n += register_cache(next - off);
	}
	probe_result = n + 1; /* the first */
	return 0;
}

/* read_word reads a kernel word (args[0]) into probe_result. */
SEC("raw_tp")
int read_word(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 v = 0;
	if (bpf_probe_read_kernel(&v, sizeof(v), (void *)ctx->args[0]) == 0)
		probe_result = v;
	else
		probe_result = 0;
	return 0;
}

/*
 * calib_probe tries a candidate for vm_page_c (args[0]) on objects whose
 * caches are known by name: the calling task's own task_struct, mm_struct,
 * files, fs, cred, signal and sighand. It leaves the name of the cache the
 * candidate finds for each in calib_names; the loader keeps the candidate
 * whose names match.
 */
#define NR_CALIB 7
char calib_names[NR_CALIB][16] = {};

SEC("raw_tp")
int calib_probe(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 c = ctx->args[0];
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 objs[NR_CALIB] = {};
	objs[0] = (__u64)task;
	objs[1] = (__u64)BPF_CORE_READ(task, mm);
	objs[2] = (__u64)BPF_CORE_READ(task, files);
	objs[3] = (__u64)BPF_CORE_READ(task, fs);
	objs[4] = (__u64)BPF_CORE_READ(task, cred);
	objs[5] = (__u64)BPF_CORE_READ(task, signal);
	objs[6] = (__u64)BPF_CORE_READ(task, sighand);
#pragma unroll
	for (int i = 0; i < NR_CALIB; i++) {
		__builtin_memset(calib_names[i], 0, sizeof(calib_names[i]));
		if (!objs[i])
			continue;
		__u64 pg = c + (objs[i] >> page_shift) * bpf_core_type_size(struct page);
		struct kmem_cache *s = (struct kmem_cache *)slab_cache_of(pg);
		if (!s)
			continue;
		const char *name = BPF_CORE_READ(s, name);
		bpf_probe_read_kernel_str(calib_names[i], sizeof(calib_names[i]), name);
	}
	return 0;
}

/*
 * obj_cache_probe stores in probe_result the slab cache of the object
 * args[1] according to the candidate args[0] for vm_page_c (tests compare it
 * with the cache a tracepoint passed).
 */
SEC("raw_tp")
int obj_cache_probe(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 pg = ctx->args[0] + (ctx->args[1] >> page_shift) * bpf_core_type_size(struct page);
	probe_result = slab_cache_of(pg);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
