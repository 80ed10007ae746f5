package main

import (
	"golang.org/x/sys/windows"
)

// processExists reports whether a process with this id exists.
func processExists(pid uint32) bool {
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, pid)
	if err != nil {
		return err == windows.ERROR_ACCESS_DENIED // it exists, we may not open it
	}
	windows.CloseHandle(h)
	return true
}

// linuxOnly are the record flags that have no meaning for pool tracing.
var linuxOnly = []string{"kinds", "cgroup", "memcg", "cache", "attach", "mode", "sample", "hot-threshold", "min-size", "stack-depth", "max-outstanding", "nested-frees", "follow"}

// checkPlatformFlags rejects Linux-only flags.
func checkPlatformFlags(set map[string]bool) error {
	for _, f := range linuxOnly {
		if set[f] {
			return usagef("--%s applies to Linux only; on Windows filter pool tags with --tag", f)
		}
	}
	return nil
}

// windowsVersionNumbers returns the real Windows version (RtlGetVersion is
// not subject to manifest-based version lies).
func windowsVersionNumbers() (major, minor, build uint32) {
	v := windows.RtlGetVersion()
	return v.MajorVersion, v.MinorVersion, v.BuildNumber
}

// checkMemcg: memory cgroups are Linux's; checkPlatformFlags refuses the
// flag where it means nothing.
func checkMemcg(string) error { return nil }
