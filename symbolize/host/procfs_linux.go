package host

import (
	"io/fs"
	"os"
)

// ReadSystemView reads /proc/meminfo and /proc/slabinfo and returns them
// with the time and the page size. /proc/slabinfo is readable by root only
// and exists only on kernels built with CONFIG_SLUB_DEBUG: when it cannot be
// read, ReadSystemView returns the view without caches (Caches nil) together
// with an error that says why, so that a caller may still show the meminfo
// part. It returns an empty view and an error when /proc/meminfo cannot be
// read or parsed.
func ReadSystemView() (SystemView, error) {
	v, err := ReadKernelCounts()
	if v.Taken.IsZero() {
		return v, err
	}
	v.Memcg = CountMemcgs()
	return v, err
}

// CountMemcgs counts the memory cgroups, dying ones apart: SystemView.Memcg
// (Source "" when unknown).
func CountMemcgs() MemcgCount {
	var v1, v2 fs.FS
	if m := cgroupV1Mount("memory"); m != "" {
		v1 = os.DirFS(m)
	}
	if m := Cgroup2Mount(); m != "" {
		v2 = os.DirFS(m)
	}
	return memcgCount(os.DirFS("/proc"), v1, v2)
}
