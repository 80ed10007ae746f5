//go:build !linux

package bpf

// CountTracked returns an error wrapping ErrNotSupported.
func (t *Tracer) CountTracked(kernel func()) (*TrackedCounts, error) { return nil, errNotSupported() }

// EveryAllocation returns false.
func (t *Tracer) EveryAllocation() (bool, string) { return false, errNotSupported().Error() }

// DetachFreesForTest returns an error wrapping ErrNotSupported.
func (t *Tracer) DetachFreesForTest() (int, error) { return 0, errNotSupported() }

// DetachAllocsForTest returns an error wrapping ErrNotSupported.
func (t *Tracer) DetachAllocsForTest() (int, error) { return 0, errNotSupported() }
