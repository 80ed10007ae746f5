package etw

import "errors"

// ErrNotSupported is returned (wrapped) by StartSession on platforms without ETW.
var ErrNotSupported = errors.New("ETW pool tracing needs Windows")

// SessionConfig configures a pool tracing session.
type SessionConfig struct {
	// Matcher receives every decoded event. Required.
	Matcher *Matcher
	// Tags, if set, asks the kernel to log only these pool tags (at most 4).
	// The Matcher should filter by the same tags, in case the kernel refuses.
	Tags []string
	// Notef receives notes for the user (session restarted, filter refused...).
	Notef func(format string, args ...any)
}
