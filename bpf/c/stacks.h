// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)

/*
 * stacks.h: stacks and adaptive call sites: walking the kernel stack
 * (walk_stack, and second_chance_stack for a stack that collided in the stack
 * map), and deciding whether an allocation's stack is walked at all
 * (decide_stack: every time, or only at hot call sites), which counts each
 * site's allocations, and site_freed, which counts its frees; page_site,
 * the call site of a page allocation, which its tracepoint does not pass.
 *
 * Depends on: maps.h (stacks, stacks2, stack_scratch, stacks2_index, sites,
 * trace_mode, hot_threshold, count).
 */

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

/*
 * page_site returns the call site of a page allocation: mm_page_alloc
 * passes none, so without one every page allocation would share one
 * adaptive site, which page churn cools, and page leaks would go unwalked.
 * It reads the stack's first PAGE_SITE_DEPTH frames (a short walk, a
 * fraction of a whole one) and returns the first frame past the page
 * allocator's functions (page_range): the tracepoint is called from inside
 * them, below the tracing machinery's frames. 0 (counted) when the walk
 * fails or ends inside them.
 */
#define PAGE_SITE_DEPTH 16

static __always_inline bool in_page_allocator(__u64 ip)
{
	/* Binary search of the sorted ranges: at most log2(PAGE_RANGES) steps. */
	__u32 lo = 0, hi = page_range_n;
	for (int i = 0; i < 6 && lo < hi; i++) {
		__u32 mid = (lo + hi) / 2;
		if (mid >= PAGE_RANGES)
			return false;
		if (ip < page_range[mid][0])
			hi = mid;
		else if (ip >= page_range[mid][1])
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

static __always_inline __u64 page_site(void *ctx)
{
	__u64 ips[PAGE_SITE_DEPTH] = {};
	long n = bpf_get_stack(ctx, ips, sizeof(ips), 0);
	bool inside = false;
	for (int i = 0; i < PAGE_SITE_DEPTH; i++) {
		if (i * 8 >= n)
			break;
		if (in_page_allocator(ips[i])) {
			inside = true;
			continue;
		}
		if (inside)
			return ips[i];
	}
	count(C_PAGE_SITE_UNKNOWN);
	return 0;
}
