// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)

/*
 * filters.h: which allocations are recorded: the task filters (self, --pid,
 * --cgroup, --follow, --memcg), sampling (admit), and the cache and size
 * filters of slab allocations (slab_filters); and the memory cgroup a task's
 * allocations are charged to.
 *
 * Depends on: maps.h, caches.h (cache_lookup).
 */

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
