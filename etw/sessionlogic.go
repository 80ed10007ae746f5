package etw

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// The logic of a pool tracing session, in the order Windows needs it, over
// the few Win32 calls it makes (win32): session_windows.go gives the real
// calls, the tests a fake, so that the checks, the order, the retries and
// the messages are tested on every OS.

// SessionName is the name of kmemprof's private system logger session. A
// session of that name found at start is a leftover of a kmemprof that did
// not exit cleanly: ErrLeftover, or with SessionConfig.StopLeftover, it is
// stopped and started again.
const SessionName = "kmemprof Pool Logger"

// sessionLockName names the mutex a running kmemprof holds while it traces,
// so that another one does not take its session for a leftover and stop it.
const sessionLockName = `Global\kmemprof-pool-logger`

// Windows error codes StartTrace returns.
const (
	errorAlreadyExists    = syscall.Errno(183)
	errorAccessDenied     = syscall.Errno(5)
	errorInvalidParameter = syscall.Errno(87)
	errorNoSystemResource = syscall.Errno(1450)
)

// Classic kernel EnableFlags of the session: processes, threads and image
// loads (EVENT_TRACE_FLAG_PROCESS, _THREAD, _IMAGE_LOAD), for the driver
// map and process names.
const sessionEnableFlags = 0x00000001 | 0x00000002 | 0x00000004

// errLockHeld is takeLock's error when the mutex exists: another kmemprof
// traces.
var errLockHeld = errors.New("another kmemprof is tracing pool allocations on this machine: wait for it to finish (one ETW pool session at a time)")

// sessionProps are the EVENT_TRACE_PROPERTIES kmemprof starts its session
// with.
type sessionProps struct {
	BufferKB, MinBuffers, MaxBuffers, FlushTimer uint32
	EnableFlags                                  uint32
	// SystemLogger: EVENT_TRACE_SYSTEM_LOGGER_MODE (a private system
	// logger); QPC: Wnode.ClientContext 1, raw QPC time stamps (StackWalk's
	// EventTimeStamp is QPC too); TracedGUID: WNODE_FLAG_TRACED_GUID, which
	// the documentation says Wnode.Flags must hold.
	SystemLogger, QPC, TracedGUID bool
}

// EVENT_TRACE_PROPERTIES values (evntrace.h, wmistr.h).
const (
	wnodeFlagAllData           = 0x00000001 // WNODE_FLAG_ALL_DATA
	wnodeFlagTracedGUID        = 0x00020000 // WNODE_FLAG_TRACED_GUID: the documentation says Wnode.Flags must hold it
	clientContextQPC           = 1          // Wnode.ClientContext: QueryPerformanceCounter time stamps
	clientContextSystemTime    = 2          // Wnode.ClientContext: system time
	eventTraceRealTimeMode     = 0x00000100 // EVENT_TRACE_REAL_TIME_MODE
	eventTraceSystemLoggerMode = 0x02000000 // EVENT_TRACE_SYSTEM_LOGGER_MODE: a private system logger
)

// traceFields are the EVENT_TRACE_PROPERTIES fields kmemprof sets, as the
// Win32 structure holds them: session_windows.go copies them in; tests read
// them on every OS.
type traceFields struct {
	WnodeFlags, ClientContext, LogFileMode, EnableFlags    uint32
	BufferSize, MinimumBuffers, MaximumBuffers, FlushTimer uint32
}

// fields are p as EVENT_TRACE_PROPERTIES fields.
func (p sessionProps) fields() traceFields {
	f := traceFields{WnodeFlags: wnodeFlagAllData, ClientContext: clientContextSystemTime, LogFileMode: eventTraceRealTimeMode,
		EnableFlags: p.EnableFlags, BufferSize: p.BufferKB, MinimumBuffers: p.MinBuffers, MaximumBuffers: p.MaxBuffers, FlushTimer: p.FlushTimer}
	if p.TracedGUID {
		f.WnodeFlags |= wnodeFlagTracedGUID
	}
	if p.QPC {
		f.ClientContext = clientContextQPC
	}
	if p.SystemLogger {
		f.LogFileMode |= eventTraceSystemLoggerMode
	}
	return f
}

// stackEvent names an event to walk kernel stacks for (CLASSIC_EVENT_ID).
type stackEvent struct {
	Class GUID
	Op    uint8
}

// win32 is what a pool tracing session asks of Windows.
type win32 interface {
	// elevated reports whether the process token is elevated.
	elevated() bool
	// enablePrivilege enables a privilege the token holds.
	enablePrivilege(name string) error
	// takeLock creates the named mutex that says a kmemprof traces, or
	// returns errLockHeld; release closes it.
	takeLock(name string) (release func(), err error)
	// startTrace starts the session (StartTrace), returning its Win32 error.
	startTrace(name string, p sessionProps) error
	// stopTraceByName stops a session by name (ControlTrace STOP).
	stopTraceByName(name string)
	// enableStacks asks for kernel stacks on these events
	// (TraceSetInformation TraceStackTracingInfo).
	enableStacks(events []stackEvent) error
	// setTagFilter asks the kernel to log only these pool tags
	// (NtSetSystemInformation, EventTracePoolTagFilterInformation).
	setTagFilter(tags []uint32) error
	// enableGroups sets the system logger's group mask (TraceSetInformation
	// TraceSystemTraceEnableFlagsInfo): EnableFlags and PERF_POOL.
	enableGroups(masks [8]uint32) error
	// openConsumer opens the real-time consumer (OpenTrace) and delivers
	// on a goroutine (ProcessTrace), whose result goes to done.
	openConsumer(name string, done chan<- error) error
	// osVersion names the Windows build, for messages.
	osVersion() string
	// stopSession, closeConsumer and detach: see controller.
	controller
}

// sessionCore is a started session: what stopping it needs.
type sessionCore struct {
	w         win32
	cfg       SessionConfig
	done      chan error
	release   func()
	consuming bool
	stopOnce  sync.Once
	// retryWaits are the pauses between tries to start the session again
	// after stopping a leftover (PerfView waits 100 ms).
	retryWaits []time.Duration
}

// numCPU is runtime.NumCPU (a test may change it).
var numCPU = runtime.NumCPU

var defaultRetryWaits = []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond}

// startSessionWith starts the session through w: the checks (a matcher,
// at most 4 tags, elevation, SeSystemProfilePrivilege), the mutex, the
// session (a leftover of a dead kmemprof is stopped and started again),
// kernel stacks for allocations before the pool events (else the first
// allocations come without stacks), the tag filter (refused: kmemprof
// filters), then the consumer. Every failure undoes what was done.
func startSessionWith(w win32, cfg SessionConfig) (*sessionCore, error) {
	if cfg.Matcher == nil {
		return nil, errors.New("starting pool tracing: no matcher")
	}
	if cfg.Notef == nil {
		cfg.Notef = func(string, ...any) {}
	}
	if len(cfg.Tags) > maxPoolTagFilters {
		return nil, fmt.Errorf("at most %d pool tags can be filtered, got %d", maxPoolTagFilters, len(cfg.Tags))
	}
	if !w.elevated() {
		return nil, errors.New("kmemprof must run elevated (as Administrator) to trace kernel pool allocations")
	}
	if err := w.enablePrivilege("SeSystemProfilePrivilege"); err != nil {
		return nil, fmt.Errorf("SeSystemProfilePrivilege is needed for kernel stacks and could not be enabled (%v): "+
			"run from an elevated prompt of an account that holds it (Administrators do by default)", err)
	}
	c := &sessionCore{w: w, cfg: cfg, done: make(chan error, 1), retryWaits: defaultRetryWaits}
	release, err := w.takeLock(sessionLockName)
	if err != nil {
		if errors.Is(err, errLockHeld) {
			return nil, errLockHeld
		}
		return nil, fmt.Errorf("creating the mutex %s: %w", sessionLockName, err)
	}
	c.release = release
	if err := c.startController(); err != nil {
		c.release()
		return nil, err
	}
	if err := c.configure(); err != nil {
		w.stopSession()
		c.release()
		return nil, err
	}
	if err := w.openConsumer(SessionName, c.done); err != nil {
		w.stopSession()
		c.release()
		return nil, fmt.Errorf("opening the real-time consumer of %q: %w", SessionName, err)
	}
	c.consuming = true
	return c, nil
}

// props are the session's properties on a machine of cpus CPUs: small
// buffers flushed every second, as PerfView sizes real-time kernel
// sessions, so that each CPU's buffer reaches the consumer soon.
func props(cpus int) sessionProps {
	lo, hi := sessionBuffers(cpus)
	return sessionProps{BufferKB: SessionBufferKB, MinBuffers: lo, MaxBuffers: hi, FlushTimer: 1,
		EnableFlags: sessionEnableFlags, SystemLogger: true, QPC: true, TracedGUID: true}
}

// startController starts kmemprof's private system logger, which does not
// collide with the NT Kernel Logger other tools use (xperf, WPR, Process
// Monitor).
func (c *sessionCore) startController() error {
	p := props(numCPU())
	err := c.w.startTrace(SessionName, p)
	if errors.Is(err, errorAlreadyExists) {
		// This process holds the mutex, so no other kmemprof runs: the
		// session is a leftover of one that did not exit cleanly, walking
		// kernel stacks for every pool allocation since. Say so; stop it
		// when asked to. Stopping it takes effect after a moment.
		if !c.cfg.StopLeftover {
			return fmt.Errorf("%w: the ETW session %q, tracing pool allocations with kernel stacks system-wide until it is stopped. "+
				"Stop it and trace: kmemprof record --stop-leftover ...; or stop it by hand: logman stop %q -ets", ErrLeftover, SessionName, SessionName)
		}
		c.cfg.Notef("a %q session left by an earlier kmemprof was running: stopped (--stop-leftover) and started again", SessionName)
		c.w.stopTraceByName(SessionName)
		for _, wait := range c.retryWaits {
			time.Sleep(wait)
			if err = c.w.startTrace(SessionName, p); !errors.Is(err, errorAlreadyExists) {
				break
			}
		}
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errorInvalidParameter):
		// Go programs run only where private system loggers exist (Windows
		// 10, Server 2016): name what was asked, not the version.
		return fmt.Errorf("starting ETW session %q: %s refused its properties (%w): a private system logger, "+
			"%d KB buffers, %d to %d of them, flush timer %d s, kernel flags %#x", SessionName, c.w.osVersion(), err,
			p.BufferKB, p.MinBuffers, p.MaxBuffers, p.FlushTimer, p.EnableFlags)
	case errors.Is(err, errorAlreadyExists):
		return fmt.Errorf("starting ETW session %q: a session of that name is still running after it was stopped (%w): "+
			"stop it by hand (logman stop %q -ets) and try again", SessionName, err, SessionName)
	case errors.Is(err, errorAccessDenied):
		return fmt.Errorf("starting ETW session %q: access denied: run kmemprof elevated", SessionName)
	case errors.Is(err, errorNoSystemResource):
		return fmt.Errorf("starting ETW session %q: the system has no free logger session (too many ETW sessions running): %w", SessionName, err)
	}
	return fmt.Errorf("starting ETW session %q: %w", SessionName, err)
}

// configure turns on kernel stacks for pool allocations, then the pool
// group: the other way round, the first allocations would come without
// stacks. Frees need no stack (they are joined to their allocation by
// address): walking stacks for allocations only halves the kernel's stack
// cost.
func (c *sessionCore) configure() error {
	events := []stackEvent{{PoolTraceGUID, OpPoolAlloc}, {PoolTraceGUID, OpPoolAllocSession}}
	if err := c.w.enableStacks(events); err != nil {
		return fmt.Errorf("enabling kernel stacks for pool events: %w", err)
	}
	if len(c.cfg.Tags) > 0 {
		tags := make([]uint32, len(c.cfg.Tags))
		for i, t := range c.cfg.Tags {
			tags[i] = TagValue(t)
		}
		if err := c.w.setTagFilter(tags); err != nil {
			c.cfg.Notef("the kernel refused the pool tag filter (%v): filtering in kmemprof instead", err)
		}
	}
	var masks [8]uint32
	masks[0] = sessionEnableFlags
	masks[PerfPoolGroupMask>>29] |= PerfPoolGroupMask & 0x1fffffff
	if err := c.w.enableGroups(masks); err != nil {
		return fmt.Errorf("enabling pool events (PERF_POOL group mask): %w", err)
	}
	return nil
}

// stop stops the session, waits for the consumer to deliver what the
// session flushed (stopAndDrain), and releases the mutex. Safe to call more
// than once.
func (c *sessionCore) stop() {
	c.stopOnce.Do(func() {
		if c.consuming {
			stopAndDrain(c.w, c.done, DrainTimeout, c.cfg.Matcher, c.cfg.Notef)
		} else {
			c.w.stopSession()
		}
		c.w.detach()
		c.release()
	})
}
