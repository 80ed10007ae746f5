package etw

import (
	"time"

	"github.com/kmemprof/kmemprof/tracer"
)

// Source is a Matcher fed by a live Session or by a recorded trace, as a
// tracer.Source: tracer.Capture drives it like the Linux tracer.
type Source struct {
	// Session is the live session feeding Matcher; nil for a recorded
	// trace, which has been fed in full before the capture.
	Session *Session
	Matcher *Matcher
	// Meta is the capture's meta; Snapshot completes it with the
	// Matcher's counters, and for a live session with the duration.
	Meta tracer.Meta
	// Events counts the events of a recorded trace (a live session counts
	// its own).
	Events uint64
}

// Stats returns the events seen. The Matcher is the session consumer's
// alone while it runs, so outstanding allocations and losses are known
// only at the end (Stats.Live is false).
func (s *Source) Stats() (tracer.Stats, error) {
	if s.Session != nil {
		return tracer.Stats{Events: s.Session.Events()}, nil
	}
	return tracer.Stats{Events: s.Events}, nil
}

// Stop stops the live session (see Session.Stop); for a recorded trace it
// does nothing.
func (s *Source) Stop() error {
	if s.Session == nil {
		return nil
	}
	err := s.Session.Stop()
	if s.Meta.Duration == 0 && !s.Meta.Start.IsZero() {
		s.Meta.Duration = time.Since(s.Meta.Start)
	}
	return err
}

// Snapshot returns the Matcher's snapshot with Meta (Matcher.Snapshot).
// Call it after Stop.
func (s *Source) Snapshot() (*tracer.Snapshot, error) {
	return s.Matcher.Snapshot(s.Meta), nil
}
