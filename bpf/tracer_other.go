//go:build !linux

package bpf

import (
	"fmt"
	"runtime"

	"github.com/kmemprof/kmemprof/tracer"
)

// Tracer is not available on this platform.
type Tracer struct{}

func errNotSupported() error {
	return fmt.Errorf("%w (%s)", ErrNotSupported, runtime.GOOS)
}

// Open returns an error wrapping ErrNotSupported.
func Open(Config) (*Tracer, error) { return nil, errNotSupported() }

// LoadOnly returns an error wrapping ErrNotSupported.
func LoadOnly(Config, Mode) ([]string, error) { return nil, errNotSupported() }

// Mode returns "".
func (t *Tracer) Mode() Mode { return "" }

// Hooks returns nil.
func (t *Tracer) Hooks() []string { return nil }

// Notes returns nil.
func (t *Tracer) Notes() []string { return nil }

// Detach returns an error wrapping ErrNotSupported.
func (t *Tracer) Detach() error { return errNotSupported() }

// Stop returns an error wrapping ErrNotSupported.
func (t *Tracer) Stop() error { return errNotSupported() }

// Usage returns an error wrapping ErrNotSupported.
func (t *Tracer) Usage() (map[tracer.StackID]tracer.Usage, error) { return nil, errNotSupported() }

// Close returns nil.
func (t *Tracer) Close() error { return nil }

// Stats returns an error wrapping ErrNotSupported.
func (t *Tracer) Stats() (Stats, error) { return Stats{}, errNotSupported() }

// Snapshot returns an error wrapping ErrNotSupported.
func (t *Tracer) Snapshot() (*tracer.Snapshot, error) { return nil, errNotSupported() }

// KernelRelease returns "unknown".
func KernelRelease() string { return "unknown" }
