package host

import (
	"io/fs"
	"os"
	"time"
)

// ReadSystemView reads /proc/meminfo and /proc/slabinfo and returns them
// with the time and the page size. /proc/slabinfo is readable by root only
// and exists only on kernels built with CONFIG_SLUB_DEBUG: when it cannot be
// read, ReadSystemView returns the view without caches (Caches nil) together
// with an error that says why, so that a caller may still show the meminfo
// part. It returns an empty view and an error when /proc/meminfo cannot be
// read or parsed.
func ReadSystemView() (SystemView, error) {
	v, err := readSystemView(os.DirFS("/proc"), time.Now(), uint64(os.Getpagesize()))
	if v.Taken.IsZero() {
		return v, err
	}
	var v1, v2 fs.FS
	if m := cgroupV1Mount("memory"); m != "" {
		v1 = os.DirFS(m)
	}
	if m := Cgroup2Mount(); m != "" {
		v2 = os.DirFS(m)
	}
	v.Memcg = memcgCount(os.DirFS("/proc"), v1, v2)
	return v, err
}
