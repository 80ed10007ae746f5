//go:build !linux

package main

import (
	"fmt"
	"io"
	"runtime"
)

// top needs the Linux slab tracepoints; on Windows, poolmon shows pool tags
// live and 'kmemprof record' gives their stacks.
func top(*topOptions, io.Reader, io.Writer, io.Writer) error {
	return fmt.Errorf("top is not supported on %s yet: use 'kmemprof record'", runtime.GOOS)
}
