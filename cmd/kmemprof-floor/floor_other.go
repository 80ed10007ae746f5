//go:build !linux

package main

import (
	"errors"
	"io"
)

func run(args []string, stdout, _ io.Writer) error {
	if o, err := parse(args, stdout); o == nil {
		return err
	}
	return errors.New("raw tracepoints are Linux's: this command runs on Linux only")
}
