// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)

/*
 * handlers.h: allocation events as every attach mode sees them: a cache
 * allocation, a kmalloc, a page allocation and a percpu allocation, each
 * completed (kind, cache id, filters) and passed to record_alloc.
 *
 * Depends on: table.h (record_alloc), caches.h, filters.h.
 */

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
	/* The kernel reports some large kmallocs twice: count them once. */
	if (ev->alloc > kmalloc_max &&
	    (kmalloc_twice((ev->ptr << 2) | KIND_SLAB) ||
	     recorded_just_now((ev->ptr << 2) | KIND_SLAB, bpf_get_current_pid_tgid() >> 32, A)))
		return;
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
