package main

import (
	"fmt"
	"os"
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
	return nil
}
