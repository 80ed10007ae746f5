package host

import (
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// MemcgKernel is a memory cgroup's kernel memory, as the kernel accounts
// it: hierarchical (a cgroup's figures include its descendants').
type MemcgKernel struct {
	// Path is the cgroup's path in its hierarchy ("/" for the root).
	Path string
	// Kernel is the kernel memory charged to it, in bytes: memory.stat's
	// "kernel" (cgroup v2, Linux 5.18+) or memory.kmem.usage_in_bytes
	// (cgroup v1); -1 when the kernel does not say.
	Kernel int64
	// SlabUnreclaimable is memory.stat's slab_unreclaimable (cgroup v2);
	// -1 when the kernel does not say.
	SlabUnreclaimable int64
}

// MemcgKernelMax bounds how many memory cgroups ReadMemcgKernel returns:
// those of most kernel memory, so that a host of thousands of containers
// gives a bounded set of series.
const MemcgKernelMax = 200

// readMemcgKernel reads the memory cgroups of a hierarchy (v1: the memory
// controller's, with memory.kmem.usage_in_bytes; else v2, with memory.stat)
// down to maxDepth levels below the root, and returns the MemcgKernelMax
// of most kernel memory (or unreclaimable slab), the root first.
func readMemcgKernel(fsys fs.FS, v1 bool, maxDepth int) []MemcgKernel {
	var out []MemcgKernel
	fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		depth := 0
		if p != "." {
			depth = strings.Count(p, "/") + 1
		}
		m := MemcgKernel{Path: "/" + strings.TrimPrefix(p, "."), Kernel: -1, SlabUnreclaimable: -1}
		if p == "." {
			m.Path = "/"
		}
		if v1 {
			if b, err := fs.ReadFile(fsys, path.Join(p, "memory.kmem.usage_in_bytes")); err == nil {
				if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil {
					m.Kernel = n
				}
			}
		} else if f, err := fsys.Open(path.Join(p, "memory.stat")); err == nil {
			st, err := ParseCgroupStat(f)
			f.Close()
			if err == nil {
				if v, ok := st["kernel"]; ok {
					m.Kernel = int64(v)
				}
				if v, ok := st["slab_unreclaimable"]; ok {
					m.SlabUnreclaimable = int64(v)
				}
			}
		}
		if m.Kernel >= 0 || m.SlabUnreclaimable >= 0 {
			out = append(out, m)
		}
		if depth >= maxDepth {
			return fs.SkipDir
		}
		return nil
	})
	sort.SliceStable(out, func(i, j int) bool {
		if (out[i].Path == "/") != (out[j].Path == "/") {
			return out[i].Path == "/"
		}
		a, b := max(out[i].Kernel, out[i].SlabUnreclaimable), max(out[j].Kernel, out[j].SlabUnreclaimable)
		if a != b {
			return a > b
		}
		return out[i].Path < out[j].Path
	})
	if len(out) > MemcgKernelMax {
		out = out[:MemcgKernelMax]
	}
	return out
}
