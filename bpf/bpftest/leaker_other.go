//go:build !linux

package bpftest

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"time"
)

func eventfdLeaker(int, io.Reader, io.Writer) error {
	return errors.New("the eventfd leaker needs Linux")
}

func setCgroup(*exec.Cmd, *os.File) {}

func steadyLeaker(int, time.Duration, io.Reader, io.Writer) error {
	return errors.New("the eventfd leaker needs Linux")
}

func treeWalker(string, int, io.Reader, io.Writer) error {
	return errors.New("the tree walker is only used on Linux")
}

func pipeFiller(int, io.Reader, io.Writer) error {
	return errors.New("the pipe filler is only used on Linux")
}

func mmapChurn(int, io.Reader, io.Writer) error {
	return errors.New("the mmap churner is only used on Linux")
}

func openCloseLoop(int) (float64, error) {
	return 0, errors.New("the open/close loop is only used on Linux")
}

func objectsMaker(int, string, io.Reader, io.Writer) error {
	return errors.New("the objects maker is only used on Linux")
}

func fileStorm(string, int, time.Duration, io.Reader, io.Writer) error {
	return errors.New("the file storm is only used on Linux")
}

func anonChurn(io.Reader, io.Writer) error {
	return errors.New("the anonymous memory churner is only used on Linux")
}

func holdEventfds(int, io.Writer) error {
	return errors.New("the eventfd holder needs Linux")
}

func lockFile(path string) (*os.File, error) { return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600) }
