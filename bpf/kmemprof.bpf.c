// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * kmemprof BPF programs: track outstanding kernel allocations.
 *
 * Every allocation hook inserts the allocation into an outstanding table keyed
 * by its pointer (slab, percpu) or page; every free hook deletes it, whatever
 * hook allocated it. User space reads the table at the end of a capture.
 *
 * One object serves every kernel from 5.10 on. What differs between kernels is
 * decided by the loader from the running kernel and written into the read-only
 * configuration (bpf/c/maps.h) before load, so the verifier sees constants and
 * drops the paths a kernel does not take:
 *   - tracepoint argument lists (raw_tp, tp_btf) come from the kernel's BTF
 *     prototypes (btf_trace_*): arg_idx gives each field's position;
 *   - classic tracepoint records come from their tracefs format: tp_off and
 *     tp_size give each field's offset and size;
 *   - allocator function signatures (kprobe, fentry) come from the functions'
 *     BTF: fn_alloc gives each slot's layout;
 *   - kernels without BPF atomics (before 5.12) load the *_na ("no atomics")
 *     programs, whose outstanding table is a BPF hash map instead of the
 *     compare-and-swap table;
 *   - where an allocation hook does not pass the slab cache (kmem_cache_alloc
 *     before 6.0, classic tracepoints, kmalloc in kprobe and fentry modes), the
 *     cache is read from the object's struct slab, through the linear map
 *     calibrated by the loader (vm_page_c).
 *
 * The attach modes: raw_tp and tp_btf (the same programs, typed for tp_btf),
 * classic tracepoints (tp_*), kprobes on the allocator functions (kp_*), and
 * fentry/fexit on them (fx_*, fe_*). Frees that have no tracepoint
 * (kmem_cache_free_bulk, which kfree_bulk and batched RCU frees use) are hooked
 * with fentry or a kprobe wherever the kernel has either.
 *
 * Nothing is dropped silently: every loss has a counter (see enum counter).
 *
 * This file is the one translation unit bpf2go compiles (bpf/gen.go). The
 * code is in bpf/c/, one part per concern, included below in an order where
 * each part uses only the parts before it. The parts are not headers that
 * stand alone: each says what it holds and what it depends on.
 *
 * A program on a tracepoint is in bpf/c/attach_tracing.h (raw_tp, tp_btf)
 * or bpf/c/attach_classic.h (classic tracepoints); one on an allocator
 * function is in bpf/c/attach_functions.h. All of them call record_alloc or
 * record_free (bpf/c/table.h).
 */
#include "headers/kmemprof_vmlinux.h"
#include "headers/bpf_helpers.h"
#include "headers/bpf_tracing.h"
#include "headers/bpf_core_read.h"

#define EEXIST 17
#define ENOMEM 12
#define E2BIG 7
#define EFAULT 14

#include "kmemprof.h"

/* Maps, global variables and load-time configuration; counters (count, count_n). */
#include "c/maps.h"
/* The free hooks' primary and backup programs: which one handles an event. */
#include "c/guard.h"
/* Reading arguments: tracing contexts, classic tracepoint records, kprobe registers. */
#include "c/args.h"
/* Slab caches: registration, an object's cache from its slab, kmalloc ids. */
#include "c/caches.h"
/* Filters: task, cgroup, memcg, sampling, cache and size. */
#include "c/filters.h"
/* Stacks and adaptive call sites. */
#include "c/stacks.h"
/* The outstanding table and accounting: record_alloc, record_free, count mode. */
#include "c/table.h"
/* Allocation events shared by the attach modes. */
#include "c/handlers.h"
/* Programs: raw_tp and tp_btf (kt_*). */
#include "c/attach_tracing.h"
/* Programs: classic tracepoints (tp_*). */
#include "c/attach_classic.h"
/* Programs: kprobes, kretprobes, fentry and fexit on allocator functions; bulk and RCU frees. */
#include "c/attach_functions.h"
/* Programs: --follow, cgroup names, and the BPF_PROG_TEST_RUN programs. */
#include "c/attach_aux.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";
