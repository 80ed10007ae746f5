//go:build !linux

package symbolize

import (
	"fmt"
	"runtime"
)

// LoadKallsyms reads /proc/kallsyms on Linux. On this platform it always
// returns an error wrapping [ErrNotSupported]; [ParseKallsyms] still works on
// a kallsyms dump read from elsewhere.
func LoadKallsyms() (*Kallsyms, error) {
	return nil, fmt.Errorf("reading %s on %s: %w", kallsymsPath, runtime.GOOS, ErrNotSupported)
}
