// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)

/*
 * attach_classic.h: the classic tracepoint programs (tp_*), which read the
 * perf trace record at the offsets of the tracepoint's tracefs format.
 *
 * Depends on: args.h (tp_field), caches.h (name_allowed, obj_cache),
 * filters.h (slab_filters), handlers.h, table.h (record_alloc, record_free).
 */

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
