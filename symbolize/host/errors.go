package host

import "errors"

// ErrNotSupported is returned (wrapped) where a host fact exists on Linux
// only (/proc/meminfo, cgroups).
var ErrNotSupported = errors.New("not supported on this platform")
