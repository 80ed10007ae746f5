//go:build !linux

package main

import (
	"fmt"
	"os"
)

func keepOnlyCaps(string) {
	fmt.Fprintln(os.Stderr, keepCapsEnv+" works on Linux only")
	os.Exit(2)
}
