//go:build !linux

package bpftest

import (
	"errors"
	"io"
)

func inflightLeaker(int, io.Reader, io.Writer) error {
	return errors.New("the in-flight eventfd leaker needs Linux")
}
