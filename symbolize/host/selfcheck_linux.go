package host

import (
	"os"
	"strings"
	"time"
)

// ReadKernelCounts reads /proc/meminfo and /proc/slabinfo, as
// ReadSystemView does but without counting the memory cgroups (CountMemcgs):
// quick enough to be read just before and just after the tracer's table,
// for the self-check. Its errors are ReadSystemView's.
func ReadKernelCounts() (SystemView, error) {
	return readSystemView(os.DirFS("/proc"), time.Now(), uint64(os.Getpagesize()))
}

// ReadSlabAllocator reads, from sysfs, the possible CPUs and memory nodes
// and, for each cache named, its cpu_partial and sheaf_capacity: what
// bounds the free objects /proc/slabinfo counts as active. What cannot be
// read keeps its default (one CPU and node; the kernel's default
// cpu_partial, no sheaves).
func ReadSlabAllocator(names []string) SlabAllocator {
	a := readSlabAllocator(os.DirFS("/sys/devices/system"), os.DirFS("/sys/kernel/slab"), names)
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		a.PartialByFreeObjects = partialByFreeObjects(strings.TrimSpace(string(b)))
	}
	return a
}
