package etw

import (
	"errors"
	"unsafe"
)

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
	// StopLeftover stops a session of kmemprof's name left running by a
	// kmemprof that did not exit cleanly (killed, crashed), and starts
	// afresh. Without it, such a session is an ErrLeftover: it walks kernel
	// stacks system-wide until stopped, which the user should hear of.
	StopLeftover bool
}

// ErrLeftover is StartSession's error when a session of kmemprof's name,
// left by a kmemprof that did not exit cleanly, is running, and
// SessionConfig.StopLeftover is not set.
var ErrLeftover = errors.New("a kmemprof pool tracing session left by an earlier kmemprof that did not exit cleanly is running")

// SessionBufferKB is the size of the session's buffers, in KB (PerfView's
// for real-time kernel sessions).
const SessionBufferKB = 64

// SelfTag is the pool tag of ETW's buffers. The session's own buffers are
// pool allocations made while it runs (it adds buffers under load) and
// freed when it stops, after the last event: MatcherConfig.SelfTag and
// SelfSize leave them out.
const SelfTag = "EtwB"

// sessionBuffers returns the session's minimum and maximum buffer counts
// for a machine with cpus CPUs: as PerfView sizes them, max(64 MB, 2 MB per
// CPU) of SessionBufferKB buffers at least, and a quarter more (plus 10)
// at most.
func sessionBuffers(cpus int) (minBuffers, maxBuffers uint32) {
	mb := max(64, 2*cpus)
	minBuffers = uint32(mb * 1024 / SessionBufferKB)
	return minBuffers, minBuffers*5/4 + 10
}

// SessionMaxBuffers is the most buffers the session holds on this machine
// (MatcherConfig.SelfMax).
func SessionMaxBuffers(cpus int) int {
	_, n := sessionBuffers(cpus)
	return int(n)
}

// The kernel's pool tag filter (see setPoolTagFilter on Windows).
const (
	eventTracePoolTagFilterInformation = 10
	maxPoolTagFilters                  = 4 // ETW_MAX_TAG_FILTER
)

// eventTraceTagFilterInformation is EVENT_TRACE_TAG_FILTER_INFORMATION
// (phnt's ntexapi.h: the class, a TRACEHANDLE aligned to 8, ULONG
// Filter[1]; sizeof 24) with room for every tag.
type eventTraceTagFilterInformation struct {
	Class       uint32
	_           uint32
	TraceHandle uint64
	Filter      [maxPoolTagFilters]uint32
}

// tagFilterInfo builds the filter for tags (at most maxPoolTagFilters) and
// the length to pass: the offset of Filter and 4 bytes a tag, but never
// less than sizeof(EVENT_TRACE_TAG_FILTER_INFORMATION), 24 bytes, which a
// kernel may require; a single tag is given twice to fill it, so that both
// readings of the length (one tag, or two) filter the same.
func tagFilterInfo(handle uint64, tags []uint32) (eventTraceTagFilterInformation, uintptr) {
	info := eventTraceTagFilterInformation{Class: eventTracePoolTagFilterInformation, TraceHandle: handle}
	n := copy(info.Filter[:], tags)
	if n == 1 {
		info.Filter[1] = info.Filter[0]
		n = 2
	}
	return info, unsafe.Offsetof(info.Filter) + uintptr(4*n)
}
