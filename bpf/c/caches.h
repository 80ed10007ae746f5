// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)

/*
 * caches.h: slab caches: registering a kmem_cache in the caches map
 * (cache_lookup), the --cache name filter, finding an object's cache from its
 * struct slab through the calibrated linear map (page_of, slab_cache_of,
 * obj_cache), and the ids and sizes of kmalloc buckets.
 *
 * Depends on: maps.h (caches, cache_filter, vm_page_c, page_shift, kmalloc_max,
 * GFP bits, count).
 */

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
