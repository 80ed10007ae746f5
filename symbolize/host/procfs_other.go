//go:build !linux

package host

import (
	"fmt"
	"runtime"
)

// ReadSystemView returns an error wrapping ErrNotSupported: /proc/meminfo and
// /proc/slabinfo exist on Linux only. ParseMeminfo and ParseSlabinfo work on
// every platform.
func ReadSystemView() (SystemView, error) {
	return SystemView{}, fmt.Errorf("reading /proc/meminfo on %s: %w", runtime.GOOS, ErrNotSupported)
}

// CgroupPathsOfPID returns an error wrapping ErrNotSupported: cgroups exist
// on Linux only. ParseProcCgroup works on every platform.
func CgroupPathsOfPID(pid int) (map[string]string, error) {
	return nil, fmt.Errorf("reading /proc/%d/cgroup on %s: %w", pid, runtime.GOOS, ErrNotSupported)
}
