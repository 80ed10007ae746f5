//go:build !linux && !windows

package main

// processExists cannot check on this platform; recording fails later anyway.
func processExists(uint32) bool { return true }

// checkPlatformFlags accepts every flag; recording is not supported here.
func checkPlatformFlags(map[string]bool) error { return nil }

// checkMemcg: memory cgroups are Linux's; checkPlatformFlags refuses the
// flag where it means nothing.
func checkMemcg(string) error { return nil }
