// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)

/*
 * attach_tracing.h: the raw_tp and tp_btf programs (kt_*) on the kmem and
 * percpu tracepoints, which read their arguments at the positions arg_idx
 * gives.
 *
 * Depends on: args.h (ctx_arg, ctx_ptr), handlers.h, table.h (record_free,
 * counting), guard.h (ROLE_*).
 */

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
	ev.ptr = page_arg(ctx, A_(HOOK_PAGE_ALLOC, F_PTR));
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
	__u64 ptr = kind == KIND_PAGE ? page_arg(ctx, arg_idx[hook][F_PTR]) : ctx_ptr(ctx, arg_idx[hook][F_PTR]);
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
