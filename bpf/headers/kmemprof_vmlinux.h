/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The few kernel types kmemprof's BPF programs use, declared by hand instead of
 * a full bpftool-generated vmlinux.h. Every struct carries
 * preserve_access_index, so field offsets are CO-RE relocations resolved
 * against the running kernel's BTF at load time: the layouts below only need
 * the right field names and types, not the right offsets.
 */
#ifndef __KMEMPROF_VMLINUX_H__
#define __KMEMPROF_VMLINUX_H__
/* Tells bpf_tracing.h to use the kernel's pt_regs field names (di, si, ...). */
#define __VMLINUX_H__

typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef short __s16;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
typedef long long __s64;
typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __s32 s32;
typedef __s64 s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
typedef unsigned long size_t;
typedef unsigned int gfp_t;
typedef unsigned int slab_flags_t;

enum {
	false = 0,
	true = 1,
};

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_HASH = 5,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_STACK_TRACE = 7,
	BPF_MAP_TYPE_CGROUP_ARRAY = 8,
	BPF_MAP_TYPE_LRU_HASH = 9,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
};

enum {
	BPF_F_NO_PREALLOC = 1,
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct list_head {
	struct list_head *next, *prev;
};

struct kmem_cache {
	slab_flags_t flags;
	unsigned int size;
	unsigned int object_size;
	const char *name;
	struct list_head list; /* every cache, linked from slab_caches */
};

/*
 * The fields of struct page and struct slab that map an object to its slab
 * cache. Both sit in anonymous unions in the kernel's definitions; CO-RE
 * finds a member by name through anonymous members, so they are flat here.
 * struct slab exists from 5.17; before it, slab_cache is a field of struct
 * page.
 */
struct page {
	unsigned long flags;
	unsigned long compound_head;
	struct kmem_cache *slab_cache;
};

/* struct page from 7.0, where compound_head became compound_info. */
struct page___info {
	unsigned long flags;
	unsigned long compound_info;
};

struct slab {
	unsigned long __page_flags;
	struct kmem_cache *slab_cache;
};

struct mm_struct;
struct files_struct;
struct fs_struct;
struct cred;
struct sighand_struct;

typedef struct {
	int counter;
} atomic_t;

/* live: the thread group's threads that have not exited. */
struct signal_struct {
	atomic_t live;
};

/* The task's cgroup v2 (default hierarchy) id: task->cgroups->dfl_cgrp->kn->id. */
struct kernfs_node {
	u64 id;
};

/* hierarchy_id: 0 for cgroup v2, the v1 hierarchy's number otherwise. */
struct cgroup_root {
	int hierarchy_id;
};

struct cgroup {
	struct kernfs_node *kn;
	struct cgroup_root *root;
};

/*
 * A controller's state in one cgroup. The memory controller's
 * (struct mem_cgroup) starts with it; cgroup is the cgroup it belongs to, in
 * the hierarchy the controller is mounted on (v1 or v2).
 */
struct cgroup_subsys_state {
	struct cgroup *cgroup;
	struct cgroup_subsys_state *parent;
};

struct mem_cgroup {
	struct cgroup_subsys_state css;
};

/* subsys is indexed by enum cgroup_subsys_id; its length is the kernel's. */
struct css_set {
	struct cgroup_subsys_state *subsys[16];
	struct cgroup *dfl_cgrp;
};

struct task_struct {
	int pid;
	int tgid;
	struct css_set *cgroups;
	/* set_active_memcg: the memcg kernel allocations are charged to instead of the task's (CONFIG_MEMCG). */
	struct mem_cgroup *active_memcg;
	char comm[16];
	struct mm_struct *mm;
	struct files_struct *files;
	struct fs_struct *fs;
	const struct cred *cred;
	struct signal_struct *signal;
	struct sighand_struct *sighand;
};

struct bpf_raw_tracepoint_args {
	__u64 args[0];
};

#if defined(__TARGET_ARCH_x86)
/* x86-64 register file, as bpf_tracing.h's PT_REGS_* macros expect it. */
struct pt_regs {
	unsigned long r15;
	unsigned long r14;
	unsigned long r13;
	unsigned long r12;
	unsigned long bp;
	unsigned long bx;
	unsigned long r11;
	unsigned long r10;
	unsigned long r9;
	unsigned long r8;
	unsigned long ax;
	unsigned long cx;
	unsigned long dx;
	unsigned long si;
	unsigned long di;
	unsigned long orig_ax;
	unsigned long ip;
	unsigned long cs;
	unsigned long flags;
	unsigned long sp;
	unsigned long ss;
};
#elif defined(__TARGET_ARCH_arm64)
/* arm64: bpf_tracing.h reads kprobe registers through struct user_pt_regs. */
struct user_pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
};

struct pt_regs {
	struct user_pt_regs user_regs;
};
#endif

#pragma clang attribute pop

/*
 * SLAB_ACCOUNT and SLAB_RECLAIM_ACCOUNT became bits of this enum in 6.9 (they
 * were #defines, 0x04000000 and 0x00020000, before); read them with
 * bpf_core_enum_value so the running kernel's value is used.
 */
enum _slab_flag_bits {
	_SLAB_ACCOUNT = 13,
	_SLAB_RECLAIM_ACCOUNT = 15,
};

/* Controller ids (CONFIG_* dependent): read with bpf_core_enum_value. */
enum cgroup_subsys_id {
	memory_cgrp_id = 4,
};

#endif /* __KMEMPROF_VMLINUX_H__ */
