package main

import (
	"fmt"
	"os"

	"github.com/kmemprof/kmemprof/symbolize/host"
)

// processExists reports whether a process with this id exists.
func processExists(pid uint32) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}

// checkPlatformFlags rejects flags that only mean something on Windows.
func checkPlatformFlags(set map[string]bool) error {
	for _, f := range []string{"tag", "pooltag"} {
		if set[f] {
			return usagef("--%s is for Windows pool tags; on Linux filter slab caches with --cache", f)
		}
	}
	if set["stop-leftover"] {
		return usagef("--stop-leftover stops a Windows pool tracing session; on Linux a killed kmemprof leaves nothing attached")
	}
	return nil
}

// checkMemcg checks --memcg before anything else runs (privileges, BPF):
// a bad path is a usage error that says what to give.
func checkMemcg(path string) error {
	if _, err := host.FindMemcgHierarchy().FilterID(path); err != nil {
		return usagef("%v", err)
	}
	return nil
}
