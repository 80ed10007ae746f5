package main

import (
	"fmt"

	"github.com/kmemprof/kmemprof/bpf"
	"github.com/kmemprof/kmemprof/symbolize/host"
	"github.com/kmemprof/kmemprof/tracer"
)

// selfCheckResult is a self-check and the kernel's view it was made
// against.
type selfCheckResult struct {
	check *tracer.SelfCheck
	// in is what was compared.
	in tracer.SelfCheckInput
	// end is /proc/meminfo and /proc/slabinfo read just after the table,
	// with the memory cgroups counted: the end of the system view, from the
	// same instant as trackedBytes.
	end host.SystemView
	// trackedBytes are the bytes the tracer held per cache at that instant.
	trackedBytes map[string]uint64
}

// selfCheck compares what tr holds now, its programs still attached, with
// the kernel's own counts (tracer.RunSelfCheck): /proc/slabinfo and
// /proc/meminfo are read just before and just after the outstanding table
// is counted, and compared with start, the view read when the capture
// began (nil: the growth is not compared). It returns an error when the
// table or /proc/slabinfo cannot be read.
func selfCheck(tr *bpf.Tracer, start *host.SystemView) (*selfCheckResult, error) {
	var views [2]host.SystemView
	var errs [2]error
	i := 0
	counts, err := tr.CountTracked(func() {
		views[i], errs[i] = host.ReadKernelCounts()
		i++
	})
	if err != nil {
		return nil, fmt.Errorf("self-check: %w", err)
	}
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("self-check: %w", err)
		}
	}
	before, after := views[0], views[1]
	names := make([]string, 0, len(after.Caches))
	for _, c := range after.Caches {
		names = append(names, c.Name)
	}
	alloc := host.ReadSlabAllocator(names)
	if start != nil && len(start.Caches) == 0 {
		start = nil
	}
	every, why := tr.EveryAllocation()
	in := host.SelfCheckInput(counts.Taken, counts.Objects, counts.PageBytes, start, before, after, alloc, every, why)
	// kmem_cache_alloc_bulk has no tracepoint: its objects are counted where
	// fentry or kprobes can hook it, and explain the growth they make; where
	// it cannot be hooked, a cache grown with nothing tracked may be its.
	in.CountedPath = "kmem_cache_alloc_bulk"
	for i := range in.Caches {
		in.Caches[i].Counted = counts.BulkAllocs[in.Caches[i].Name]
		in.Caches[i].Pending = counts.RecentRCU[in.Caches[i].Name]
	}
	if !counts.BulkHooked {
		in.UnseenWhy = "kmem_cache_alloc_bulk, which has no tracepoint, is not hooked on this kernel"
	}
	if counts.Unnamed > 0 {
		// Their cache was not found (cache_unresolved): not comparable.
		if in.Unmatched == nil {
			in.Unmatched = map[string]uint64{}
		}
		in.Unmatched["[unknown cache]"] += counts.Unnamed
	}
	after.Memcg = host.CountMemcgs()
	return &selfCheckResult{check: tracer.RunSelfCheck(in), in: in, end: after, trackedBytes: counts.Bytes}, nil
}
