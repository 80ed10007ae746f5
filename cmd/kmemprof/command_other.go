//go:build !linux

package main

import "fmt"

const execShimCmd = "__exec"

func execShim([]string) int { return exitError }

// commandUnsupported is the error of record -- CMD where it is not supported.
func commandUnsupported() error {
	return fmt.Errorf("tracing a command (record -- CMD) is supported on Linux only for now")
}
