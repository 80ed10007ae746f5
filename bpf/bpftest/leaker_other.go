//go:build !linux

package bpftest

import (
	"errors"
	"io"
	"os"
	"os/exec"
)

func eventfdLeaker(int, io.Reader, io.Writer) error {
	return errors.New("the eventfd leaker needs Linux")
}

func setCgroup(*exec.Cmd, *os.File) {}
