package bpf

import (
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
	return readSystemView(os.DirFS("/proc"), time.Now(), uint64(os.Getpagesize()))
}
