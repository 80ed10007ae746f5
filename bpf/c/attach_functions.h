// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)

/*
 * attach_functions.h: programs on the allocator functions themselves:
 * kprobe/kretprobe (kp_*, kr_*) and fexit (fx_*) on the allocators in the
 * slots of fn_alloc; kprobe and fentry (fe_*) on kmem_cache_free and kfree;
 * and the frees that have no tracepoint: kmem_cache_free_bulk and
 * kvfree_call_rcu.
 *
 * Depends on: args.h (ctx_arg, ctx_ptr, ctx_copy, kp_arg), caches.h,
 * filters.h, stacks.h (decide_stack, site_freed), table.h (store_alloc,
 * nested, record_free), guard.h.
 */

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
 * nested_large reports whether a large kmalloc seen at the return of a
 * kmalloc function that is not itself a large one was recorded already by
 * the hooked large-kmalloc function it called (6.10+: __kmalloc_noprof calls
 * __kmalloc_large_node_noprof past kmalloc_max): counted once, exactly, where
 * nested() may miss the pair (recorded_just_now).
 */
static __always_inline bool nested_large(__u64 ptr, int slot, __u64 size, __u32 tgid, const int A)
{
	if (fn_alloc[slot].large || fn_alloc[slot].hook == HOOK_CACHE_ALLOC || size <= kmalloc_max)
		return false;
	return recorded_just_now((ptr << 2) | KIND_SLAB, tgid, A);
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
			if (ret_addr(words[i]) > fn && ret_addr(words[i]) < fn + 32) {
				w = base + i + FX_PARENT_DELTA;
				break;
			}
		}
		fx_site_word[slot] = w;
		if (w == 0xff)
			return 0;
	}
	bpf_probe_read_kernel(&v, sizeof(v), (void *)ctx + 8 * (w & 0x3f));
	return ret_addr(v);
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
	__u64 size = ctx_arg(ctx, fn_alloc[slot].size);
	if (nested((ev.ptr << 2) | KIND_SLAB, pid_tgid) || nested_large(ev.ptr, slot, size, pid_tgid >> 32, A))
		return 0;
	ev.hook = fn_alloc[slot].hook;
	ev.order = slot + 1; /* user space puts the allocator function at the stack's leaf */
	ev.gfp = ctx_arg(ctx, fn_alloc[slot].gfp);
	ev.cache = ctx_arg(ctx, fn_alloc[slot].cache);
	if (!fn_finish(&ev, slot, size))
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
	a.ev.site = kp_ret_ip(ctx);
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
			count(attached ? C_RETURN_NO_ENTRY : C_RETURN_AT_ATTACH);
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
	if (nested((a.ev.ptr << 2) | KIND_SLAB, pid_tgid) || nested_large(a.ev.ptr, slot, a.size, pid_tgid >> 32, A) ||
	    !fn_finish(&a.ev, slot, a.size)) {
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

/*
 * kmem_cache_alloc_bulk(s, flags, size, p) allocates size objects with no
 * tracepoint (the maple tree's nodes, NAPI's skb heads, io_uring's
 * requests): they are not tracked, but counted per cache (bulk_allocs), so
 * that the self-check can tell a cache's growth through it from
 * allocations it missed.
 */
/* fexit: what it allocated, its return value (0 when it failed). */
SEC("fexit")
int fx_alloc_bulk(__u64 *ctx)
{
	__s32 got = (__s32)ctx_arg(ctx, 5);
	if (got > 0)
		add_per_cache(&bulk_allocs, ctx_copy(ctx, 1), got);
	return 0;
}

/* kprobe: what it was asked for (it fails only when memory runs out). */
SEC("kprobe")
int kp_alloc_bulk(struct pt_regs *ctx)
{
	add_per_cache(&bulk_allocs, PT_REGS_PARM1(ctx), PT_REGS_PARM3(ctx));
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
