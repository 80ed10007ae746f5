//go:build !linux

package main

import (
	"fmt"
	"io"
	"runtime"
)

func runAgent(args []string, stdout, stderr io.Writer) int {
	return report(stderr, "agent", fmt.Errorf("the agent traces the Linux kernel; not available on %s", runtime.GOOS))
}
