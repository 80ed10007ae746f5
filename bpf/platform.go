package bpf

import (
	"strconv"
	"strings"

	"github.com/kmemprof/kmemprof/tracer"
)

// Platform presents Linux kernel frames and labels: every Snapshot of a
// Tracer carries it.
var Platform = tracer.Platform{
	KernelMapping:  "[kernel.kallsyms]", // as perf and other kernel profilers name it
	KernelFile:     "vmlinux",
	TrimLeading:    trimLeading,
	DropFrames:     []string{"bpf_trampoline_"},
	AllocatorFrame: func(f tracer.Frame) bool { return IsAllocatorFrame(f.Function) },
	MigrateName:    MigrateName,
	Constructor:    IsConstructor,
}

// IsConstructor reports whether a kernel function builds an object of a
// reclaimable cache together with what is freed with it: alloc_inode (the
// inode, then in inode_init_always its security blob and the like) and
// __d_alloc (the dentry and its external name). Objects allocated under a
// call of one are owned by the inode or dentry of that call (see
// tracer.Platform.Constructor).
func IsConstructor(name string) bool {
	switch name {
	case "alloc_inode", "__d_alloc":
		return true
	}
	return false
}

// trimLeading are the function-name prefixes of the frames that stacks
// walked from raw_tp, tp_btf, tracepoint, kprobe and fentry BPF programs
// begin with: the tracing machinery, not where the allocation was made.
var trimLeading = []string{
	"bpf_prog_",
	"bpf_trace_run",
	"__bpf_trace_",
	"perf_trace_",
	"trace_event_raw_event_",
	"perf_tp_event",
	"perf_trace_run_bpf_submit",
	"trace_call_bpf",
	"__traceiter_",
	"bpf_trampoline_",
	"kprobe_",
	"kretprobe_",
	"rethook_",
	"arch_rethook_",
	"pre_handler_kretprobe",
	"aggr_pre_handler",
	"kprobe_ftrace_handler",
	"ftrace_",
}

// allocatorPrefixes name the allocator entry points and internals (the
// *_noprof variants of allocation profiling kernels share the prefixes).
var allocatorPrefixes = [...]string{
	"kmem_cache_alloc",
	"__kmem_cache_alloc",
	"kmalloc",
	"__kmalloc",
	"kmalloc_trace",
	"kzalloc",
	"kcalloc",
	"kvmalloc",
	"__kvmalloc",
	"kvzalloc",
	"krealloc",
	"kmemdup",
	"kstrdup",
	"kstrndup",
	"__alloc_pages",
	"alloc_pages",
	"__alloc_frozen_pages",
	"alloc_frozen_pages",
	"__folio_alloc",
	"folio_alloc",
	"alloc_slab_page",
	"allocate_slab",
	"new_slab",
	"___slab_alloc",
	"__slab_alloc",
	"slab_alloc_node",
	"pcpu_alloc",
	"__alloc_percpu",
	"alloc_percpu",
	"__get_free_pages",
	"get_zeroed_page",
	"kmalloc_large",
	"__kmalloc_large",
	"alloc_pages_mpol",
}

// IsAllocatorFrame reports whether name is a kernel allocator function
// (kmalloc, kmem_cache_alloc, the page and per-CPU allocators, their
// _noprof variants) rather than its caller.
func IsAllocatorFrame(name string) bool {
	for _, p := range allocatorPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// MigrateName names the migrate types of Linux 6.x kernels built without
// CONFIG_CMA (enum migratetype).
func MigrateName(mt uint8) string {
	switch mt {
	case 0:
		return "Unmovable"
	case 1:
		return "Movable"
	case 2:
		return "Reclaimable"
	case 3:
		return "HighAtomic"
	case 4:
		return "Isolate"
	}
	return "migratetype(" + strconv.Itoa(int(mt)) + ")"
}
