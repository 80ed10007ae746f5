package bpf

import (
	"fmt"
	"sort"
)

// CacheStat is one slab cache's activity since tracing began.
type CacheStat struct {
	Name   string
	Allocs uint64 // allocations made since tracing began
	Frees  uint64 // frees of those allocations
	Size   uint64 // bytes per object (0 when objects differ, e.g. kmalloc-large)
	// Bytes and FreedBytes are the bytes allocated and freed of those
	// allocations, where the hooks give them (kmalloc; kmalloc-large).
	Bytes, FreedBytes uint64
}

// Diff returns the allocations still outstanding.
func (c CacheStat) Diff() uint64 {
	if c.Allocs < c.Frees {
		return 0
	}
	return c.Allocs - c.Frees
}

// InUse returns the bytes still outstanding.
func (c CacheStat) InUse() uint64 {
	if c.Size == 0 {
		if c.Bytes < c.FreedBytes {
			return 0
		}
		return c.Bytes - c.FreedBytes
	}
	return c.Diff() * c.Size
}

// CacheStats returns per-cache counts (Config.CountCaches must be set),
// sorted by name. It may be called while tracing.
func (t *Tracer) CacheStats() ([]CacheStat, error) {
	if !t.cfg.CountCaches {
		return nil, fmt.Errorf("cache statistics were not enabled (Config.CountCaches)")
	}
	type acc struct{ allocs, frees, bytes, freed uint64 }
	byID := map[uint64]acc{}
	var ids []uint64
	var id uint64
	var vals []kmemprofCacheStat
	it := t.maps.CacheStats.Iterate()
	for it.Next(&id, &vals) {
		var a acc
		for _, v := range vals {
			a.allocs += v.Allocs
			a.frees += v.Frees
			a.bytes += v.Bytes
			a.freed += v.FreedBytes
		}
		byID[id] = a
		ids = append(ids, id)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading cache statistics: %w", err)
	}
	if err := t.resolveCaches(ids); err != nil {
		return nil, err
	}
	caches, err := t.readCaches()
	if err != nil {
		return nil, err
	}
	byName := map[string]*CacheStat{}
	for id, a := range byID {
		name := caches.name(id)
		size := uint64(caches[id].size)
		if size == 0 && id&kmallocIDBase != 0 {
			size = id & 0xffff // kmalloc size class; 0 for kmalloc-large
		}
		cs := byName[name]
		if cs == nil {
			cs = &CacheStat{Name: name, Size: size}
			byName[name] = cs
		}
		cs.Allocs += a.allocs
		cs.Frees += a.frees
		cs.Bytes += a.bytes
		cs.FreedBytes += a.freed
	}
	out := make([]CacheStat, 0, len(byName))
	for _, cs := range byName {
		out = append(out, *cs)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
