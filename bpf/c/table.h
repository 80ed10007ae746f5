// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)

/*
 * table.h: the outstanding table and what is counted beside it: recording an
 * admitted allocation (store_alloc, record_alloc) in the compare-and-swap
 * array table (A = 1) or the hash map of kernels without atomics (A = 0),
 * deleting it at its free (free_event, record_free), per-stack totals,
 * per-cache counts (cache_stat_add) and count mode (top), missed and nested
 * frees.
 *
 * Depends on: maps.h, guard.h (record_free), caches.h, filters.h (admit,
 * current_memcg_css, task_memcg_id), stacks.h (decide_stack, site_freed,
 * page_site).
 */

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
 * and fentry modes: __kmalloc_noprof calls __kmalloc_large_node_noprof for
 * large sizes), whose return follows the inner one's at once, and which must
 * count once. "Just": within NESTED_WINDOW_NS, so that an object freed on
 * another CPU (which cannot clear this CPU's last allocation) and handed to
 * the same task again later is not taken for a nested call and dropped.
 */
#define NESTED_WINDOW_NS 1000000ULL
#define LAST_NESTED 0
#define LAST_LARGE 1

/*
 * seen_twice reports whether key was just recorded on this CPU by the
 * same task (slot: LAST_NESTED or LAST_LARGE of last_allocs), and records it
 * as this CPU's last otherwise.
 */
static __always_inline bool seen_twice(__u32 slot, __u64 key, __u64 pid_tgid)
{
	struct last_alloc *l = bpf_map_lookup_elem(&last_allocs, &slot);
	if (!l)
		return false;
	__u64 now = bpf_ktime_get_ns();
	if (l->key == key && l->pid_tgid == pid_tgid && now - l->ts < NESTED_WINDOW_NS) {
		count(C_NESTED);
		return true;
	}
	l->key = key;
	l->pid_tgid = pid_tgid;
	l->ts = now;
	return false;
}

/*
 * kmalloc_twice reports whether a large kmalloc's event is the kernel's
 * second of the same allocation: from 6.10, __do_kmalloc_node fires the
 * kmalloc tracepoint after __kmalloc_large_node_noprof, which fired it
 * already, with the same pointer. Counted once (nested_allocs).
 */
static __always_inline bool kmalloc_twice(__u64 key)
{
	return seen_twice(LAST_LARGE, key, bpf_get_current_pid_tgid());
}

static __always_inline bool nested(__u64 key, __u64 pid_tgid)
{
	return dedupe_nested && seen_twice(LAST_NESTED, key, pid_tgid);
}

/* bucket_of is the array table's bucket of a key, one of 1 << table_bits. */
static __always_inline __u32 bucket_of(__u64 key)
{
	return (__u32)((key * 0x9E3779B97F4A7C15ULL) >> (64 - table_bits));
}

/* find_record is the outstanding record of key, or NULL. */
static __always_inline struct alloc_info *find_record(__u64 key, const int A)
{
	if (!A)
		return bpf_map_lookup_elem(&table_hash, &key);
	__u32 b = bucket_of(key);
	struct bucket *bk = bpf_map_lookup_elem(&table_keys, &b);
	if (!bk)
		return NULL;
#pragma unroll
	for (int i = 0; i < BUCKET_WAYS; i++) {
		if (bk->key[i] == key) {
			__u32 idx = b * BUCKET_WAYS + i;
			return bpf_map_lookup_elem(&table_recs, &idx);
		}
	}
	return NULL;
}

/*
 * recorded_just_now reports whether key's record is a large kmalloc the
 * same process made within the last two ticks of the allocation clock: the
 * first of a pair of reports of one allocation (kmalloc_twice, nested_large),
 * which the second must not replace. nested() and kmalloc_twice see the pair
 * on this CPU's last allocation, which an interrupt that allocates between
 * the two, or a slow one (emulated kernels), overwrites or ages; the table
 * is exact. A real reuse of the pointer after a missed free, by the same
 * process within 20 ms, is all it could mistake.
 */
static __always_inline bool recorded_just_now(__u64 key, __u32 tgid, const int A)
{
	struct alloc_info *v = find_record(key, A);
	if (!v || v->tgid != tgid || v->kind != KIND_SLAB || v->ts + 2 * CLOCK_TICK_NS < clock_ns)
		return false;
	count(C_NESTED);
	return true;
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
	/* The adaptive mode decides by call site, which page hooks do not pass. */
	if (trace_mode == MODE_ADAPTIVE && ev->kind == KIND_PAGE && !ev->site && page_range_n)
		ev->site = page_site(ctx);
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
	__u32 slot = LAST_NESTED;
	struct last_alloc *l = bpf_map_lookup_elem(&last_allocs, &slot);
	if (l && l->key == key)
		l->key = 0;
}

/* free_event deletes a freed allocation, or counts it (count mode). */
/* add_per_cache adds n to cache's count in m (bulk_allocs, rcu_frees). */
static __always_inline void add_per_cache(void *m, __u64 cache, __u64 n)
{
	if (!cache || !n)
		return;
	__u64 *v = bpf_map_lookup_elem(m, &cache);
	if (v) {
		__sync_fetch_and_add(v, n);
		return;
	}
	if (bpf_map_update_elem(m, &cache, &n, BPF_NOEXIST) == -EEXIST) {
		v = bpf_map_lookup_elem(m, &cache);
		if (v)
			__sync_fetch_and_add(v, n);
	}
}

/*
 * free_event deletes a freed allocation, or counts it (count mode). hook is
 * the free's hook: an object handed to kfree_rcu is counted for its cache
 * (rcu_frees).
 */
static __always_inline void free_event(__u64 ptr, __u64 key, __u8 kind, __u32 untracked, const int A, __u64 cache,
				       __u32 hook)
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
		if (hook == HOOK_FREE_RCU)
			add_per_cache(&rcu_frees, v->cache, 1);
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
			if (trace_mode == MODE_ADAPTIVE || count_caches || hook == HOOK_FREE_RCU) {
				__u32 idx = b * BUCKET_WAYS + i;
				struct alloc_info *v = bpf_map_lookup_elem(&table_recs, &idx);
				if (v) {
					site_freed(v->site);
					if (count_caches)
						cache_stat_add(v->cache, 0, v->bytes_alloc);
					if (hook == HOOK_FREE_RCU)
						add_per_cache(&rcu_frees, v->cache, 1);
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
			free_event(ptr, key, kind, untracked, A, cache, hook);
		else
			count(C_FREE_NULL);
	}
	guard_exit(g, role);
}
