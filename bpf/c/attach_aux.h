// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)

/*
 * attach_aux.h: the programs that are not allocation hooks: --follow's process
 * tree (tree_fork, tree_exit), the names of cgroups made during the capture
 * (cgroup_mkdir), and the programs user space runs with BPF_PROG_TEST_RUN and
 * never attaches (resolve_cache, register_caches, read_word, calib_probe,
 * obj_cache_probe).
 *
 * Depends on: maps.h (tree, cgroup_names, cgroup_name_buf, memcg_hierarchy,
 * probe_result, count), caches.h (cache_lookup, obj_cache, slab_cache_of).
 * calib_names, the one global variable not in maps.h, is here beside
 * calib_probe, the only program that writes it.
 */

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
