package bpf

import (
	"fmt"
	"sort"
)

// CacheStat is one slab cache's activity since tracing began.
type CacheStat struct {
	Name   string
	Allocs uint64 // allocations made since tracing began
	// Frees are the frees since tracing began: with TrackCount, of any
	// object of the cache, whenever it was allocated; else of the
	// allocations made since.
	Frees uint64
	Size  uint64 // bytes per object (0 when objects differ, e.g. kmalloc-large)
	// Bytes and FreedBytes are the bytes allocated and freed, where the hooks
	// give them and objects differ in size (kmalloc-large).
	Bytes, FreedBytes uint64
}

// Diff returns allocations less frees: the change in the cache's objects
// since tracing began (TrackCount; negative when it shrank), or the
// allocations made since that are still outstanding.
func (c CacheStat) Diff() int64 {
	return int64(c.Allocs) - int64(c.Frees)
}

// InUse returns the bytes that Diff holds.
func (c CacheStat) InUse() int64 {
	if c.Size == 0 {
		return int64(c.Bytes) - int64(c.FreedBytes)
	}
	return c.Diff() * int64(c.Size)
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
		if cs.Size == 0 {
			cs.Size = size
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
