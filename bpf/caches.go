package bpf

import "fmt"

// kmallocIDBase marks the synthetic cache ids of kmalloc size classes
// (KMALLOC_ID in kmemprof.h): base | variant<<16 | size, size 0 for
// allocations above the largest kmalloc cache.
const kmallocIDBase = uint64(1) << 40

// kmallocName names a kmalloc cache id the way /proc/slabinfo does:
// kmalloc-64, kmalloc-cg-64 (memcg accounted), kmalloc-rcl-64
// (reclaimable), dma-kmalloc-64, kmalloc-1k; kmalloc-large for allocations
// served by the page allocator. It returns "" for an id that is not a kmalloc id.
func kmallocName(id uint64) string {
	if id&^(kmallocIDBase|0xffff_ffff) != 0 || id&kmallocIDBase == 0 {
		return ""
	}
	variant := (id >> 16) & 0xffff
	size := id & 0xffff
	var sz string
	switch {
	case size == 0:
		return "kmalloc-large"
	case size >= 1024 && size%1024 == 0:
		sz = fmt.Sprintf("%dk", size/1024)
	default:
		sz = fmt.Sprint(size)
	}
	switch variant {
	case 1:
		return "kmalloc-cg-" + sz
	case 2:
		return "kmalloc-rcl-" + sz
	case 3:
		return "dma-kmalloc-" + sz
	}
	return "kmalloc-" + sz
}
