//go:build !linux && !windows

package main

import (
	"fmt"
	"io"
	"runtime"

	"github.com/kmemprof/kmemprof/bpf"
)

func record(o *recordOptions, stdout, stderr io.Writer) error {
	if o.command != nil {
		return usagef("%v", commandUnsupported())
	}
	return fmt.Errorf("recording on %s: %w", runtime.GOOS, bpf.ErrNotSupported)
}
