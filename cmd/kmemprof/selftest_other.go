//go:build !linux

package main

import (
	"io"
	"runtime"
)

const selftestChildCmd = "__selftest-child"

func selftestChild([]string, io.Writer) int { return exitUsage }

// selftest makes a kernel leak with eventfds, which is Linux-specific.
func selftest(o *selftestOptions, w io.Writer) bool {
	c := &checker{w: w}
	c.check(false, "platform", "selftest needs Linux (this is %s)", runtime.GOOS)
	return c.done()
}
