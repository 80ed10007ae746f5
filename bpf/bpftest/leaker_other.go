//go:build !linux

package bpftest

import (
	"errors"
	"io"
)

func eventfdLeaker(int, io.Reader, io.Writer) error {
	return errors.New("the eventfd leaker needs Linux")
}
