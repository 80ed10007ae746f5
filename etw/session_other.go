//go:build !windows

package etw

import (
	"fmt"
	"runtime"
)

// Session is a running kernel pool tracing session; only Windows has one.
type Session struct {
	// Kernel names the kind of kernel session in use.
	Kernel string
}

// StartSession returns an error wrapping ErrNotSupported.
func StartSession(SessionConfig) (*Session, error) {
	return nil, fmt.Errorf("%w (this is %s)", ErrNotSupported, runtime.GOOS)
}

// Events returns 0.
func (s *Session) Events() uint64 { return 0 }

// Stop does nothing.
func (s *Session) Stop() error { return nil }
