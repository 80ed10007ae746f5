//go:build windows

package etw

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	goetw "github.com/0xrawsec/golang-etw/etw"
	"golang.org/x/sys/windows"
)

// SessionName is the name of kmemprof's private system logger session. A
// session of that name found at start is a leftover of a kmemprof that did
// not exit cleanly: it is stopped and started again.
const SessionName = "kmemprof Pool Logger"

// kmemprofSessionGUID identifies kmemprof's private system logger.
var kmemprofSessionGUID = goetw.MustParseGUIDFromString("{6c0f3a6e-1f5e-4c1b-9b6d-6b6d70726f66}")

// Windows error codes StartTrace returns.
const (
	errorAlreadyExists    = syscall.Errno(183)
	errorAccessDenied     = syscall.Errno(5)
	errorInvalidParameter = syscall.Errno(87)
	errorNoSystemResource = syscall.Errno(1450)
)

// wnodeFlagTracedGUID is WNODE_FLAG_TRACED_GUID, which the documentation of
// EVENT_TRACE_PROPERTIES says Wnode.Flags must contain.
const wnodeFlagTracedGUID = 0x00020000

// eventHeaderFlagProcessorIndex is EVENT_HEADER_FLAG_PROCESSOR_INDEX: the
// buffer context holds the 16-bit ProcessorIndex, not ProcessorNumber.
const eventHeaderFlagProcessorIndex = 0x0200

var (
	advapi32                  = windows.NewLazySystemDLL("advapi32.dll")
	procTraceSetInformation   = advapi32.NewProc("TraceSetInformation")
	procAdjustTokenPrivileges = advapi32.NewProc("AdjustTokenPrivileges")
	ntdll                     = windows.NewLazySystemDLL("ntdll.dll")
	procNtSetSystemInfo       = ntdll.NewProc("NtSetSystemInformation")
)

// traceSetInformation calls advapi32!TraceSetInformation, which golang-etw
// does not wrap.
func traceSetInformation(h syscall.Handle, class uint32, info unsafe.Pointer, size uint32) error {
	if err := procTraceSetInformation.Find(); err != nil {
		return fmt.Errorf("TraceSetInformation is not available: %w", err)
	}
	r, _, _ := procTraceSetInformation.Call(uintptr(h), uintptr(class), uintptr(info), uintptr(size))
	if r != 0 {
		return syscall.Errno(r)
	}
	return nil
}

// The kernel's pool tag filter for a trace session: NtSetSystemInformation
// with SystemPerformanceTraceInformation and an
// EVENT_TRACE_TAG_FILTER_INFORMATION of class
// EventTracePoolTagFilterInformation (phnt's ntexapi.h).
const (
	systemPerformanceTraceInformation = 31
)

// setPoolTagFilter asks the kernel to log only the pool events of tags.
func setPoolTagFilter(h syscall.Handle, tags []uint32) error {
	if err := procNtSetSystemInfo.Find(); err != nil {
		return err
	}
	info, size := tagFilterInfo(uint64(h), tags)
	status, _, _ := procNtSetSystemInfo.Call(systemPerformanceTraceInformation, uintptr(unsafe.Pointer(&info)), size)
	runtime.KeepAlive(&info)
	if status != 0 {
		return fmt.Errorf("NTSTATUS %#x", uint32(status))
	}
	return nil
}

// classicEventID is CLASSIC_EVENT_ID: an event class and opcode to collect
// kernel stacks for.
type classicEventID struct {
	EventGUID goetw.GUID
	Type      uint8
	Reserved  [7]uint8
}

// perfinfoGroupMask is PERFINFO_GROUPMASK: Masks[0] holds the classic
// EnableFlags, further words the extended groups (PERF_POOL is in Masks[1]).
type perfinfoGroupMask struct {
	Masks [8]uint32
}

// Session is a running kernel pool tracing session and its real-time
// consumer. Stop it on every exit path; a session left running by a crash
// is stopped by the next StartSession.
type Session struct {
	cfg      SessionConfig
	name     string
	handle   syscall.Handle // controller handle (StartTrace)
	props    *goetw.EventTraceProperties
	trace    syscall.Handle // consumer handle (OpenTrace)
	done     chan error
	events   atomic.Uint64
	stopOnce sync.Once
	lock     windows.Handle // the named mutex that says a kmemprof traces
	// Kernel is "private system logger".
	Kernel string
}

// current is the session whose events the ETW callbacks deliver. Callbacks
// made with syscall.NewCallbackCDecl cannot carry a Go pointer, and only a
// limited number can ever be created, so they are made once and dispatch
// through this pointer; kmemprof runs one session at a time.
var (
	current       atomic.Pointer[Session]
	callbacksOnce sync.Once
	eventCB       uintptr
	bufferCB      uintptr
)

// StartSession starts the kernel session with pool events, kernel stacks for
// them, and process, thread and image events (for the driver map), then its
// real-time consumer. The errors say what is missing: elevation,
// SeSystemProfilePrivilege, or a kernel logger held by another tool.
func StartSession(cfg SessionConfig) (*Session, error) {
	if cfg.Matcher == nil {
		return nil, errors.New("starting pool tracing: no matcher")
	}
	if cfg.Notef == nil {
		cfg.Notef = func(string, ...any) {}
	}
	if len(cfg.Tags) > 4 {
		return nil, fmt.Errorf("at most 4 pool tags can be filtered, got %d", len(cfg.Tags))
	}
	if !windows.GetCurrentProcessToken().IsElevated() {
		return nil, errors.New("kmemprof must run elevated (as Administrator) to trace kernel pool allocations")
	}
	if err := enablePrivilege("SeSystemProfilePrivilege"); err != nil {
		return nil, fmt.Errorf("SeSystemProfilePrivilege is needed for kernel stacks and could not be enabled (%v): "+
			"run from an elevated prompt of an account that holds it (Administrators do by default)", err)
	}
	s := &Session{cfg: cfg, done: make(chan error, 1)}
	lock, err := takeSessionLock()
	if err != nil {
		return nil, err
	}
	s.lock = lock
	if err := s.startController(); err != nil {
		s.releaseLock()
		return nil, err
	}
	if err := s.configure(); err != nil {
		s.stopSession()
		s.releaseLock()
		return nil, err
	}
	if err := s.startConsumer(); err != nil {
		s.stopSession()
		s.releaseLock()
		return nil, err
	}
	return s, nil
}

// sessionLockName names the mutex a running kmemprof holds while it traces,
// so that another one does not take its session for a leftover and stop it.
const sessionLockName = `Global\kmemprof-pool-logger`

// takeSessionLock creates the named mutex, or says that another kmemprof
// traces: the object exists as long as a process holds a handle to it, so
// its existence, not its ownership (which Windows gives to one thread, and
// Go moves goroutines between threads), tells. A kmemprof that died left no
// handle, and no object.
func takeSessionLock() (windows.Handle, error) {
	name, err := windows.UTF16PtrFromString(sessionLockName)
	if err != nil {
		return 0, err
	}
	h, err := windows.CreateMutex(nil, false, name)
	switch {
	case h != 0 && errors.Is(err, windows.ERROR_ALREADY_EXISTS):
		windows.CloseHandle(h)
		return 0, errors.New("another kmemprof is tracing pool allocations on this machine: wait for it to finish (one ETW pool session at a time)")
	case h == 0:
		return 0, fmt.Errorf("creating the mutex %s: %w", sessionLockName, err)
	}
	return h, nil
}

func (s *Session) releaseLock() {
	if s.lock != 0 {
		windows.CloseHandle(s.lock)
		s.lock = 0
	}
}

const flags = goetw.EVENT_TRACE_FLAG_PROCESS | goetw.EVENT_TRACE_FLAG_THREAD | goetw.EVENT_TRACE_FLAG_IMAGE_LOAD

// startController starts kmemprof's private system logger session, which
// does not collide with the NT Kernel Logger other tools use (xperf, WPR,
// Process Monitor). Go binaries need Windows 10 or Server 2016, where
// private system loggers exist (since Windows 8).
func (s *Session) startController() error {
	err := s.start(SessionName, kmemprofSessionGUID, goetw.EVENT_TRACE_SYSTEM_LOGGER_MODE)
	if errors.Is(err, errorAlreadyExists) {
		// This process holds the session lock, so no other kmemprof runs:
		// the session is a leftover of one that did not exit cleanly.
		// Stopping it takes effect after a moment; retry as PerfView does
		// (it waits 100 ms), a little longer.
		s.cfg.Notef("a %q session left by an earlier kmemprof was running: stopped and started again", SessionName)
		s.stopByName(SessionName, kmemprofSessionGUID)
		for wait := 100 * time.Millisecond; wait <= 1600*time.Millisecond; wait *= 2 {
			time.Sleep(wait)
			if err = s.start(SessionName, kmemprofSessionGUID, goetw.EVENT_TRACE_SYSTEM_LOGGER_MODE); !errors.Is(err, errorAlreadyExists) {
				break
			}
		}
	}
	if errors.Is(err, errorInvalidParameter) {
		// Go programs run only on Windows 10 / Server 2016 and later, which
		// have private system loggers: name what was asked, not the
		// version.
		v := windows.RtlGetVersion()
		return fmt.Errorf("starting ETW session %q: Windows %d.%d build %d refused its properties (%w): a private system logger, "+
			"%d KB buffers, %d to %d of them, flush timer 1 s, kernel flags %#x", SessionName, v.MajorVersion, v.MinorVersion, v.BuildNumber, err,
			SessionBufferKB, s.minBuffers(), s.maxBuffers(), flags)
	}
	if err != nil {
		return startError(SessionName, err)
	}
	s.Kernel = "private system logger"
	return nil
}

func (s *Session) minBuffers() uint32 { n, _ := sessionBuffers(runtime.NumCPU()); return n }
func (s *Session) maxBuffers() uint32 { _, n := sessionBuffers(runtime.NumCPU()); return n }

func startError(name string, err error) error {
	switch {
	case errors.Is(err, errorAccessDenied):
		return fmt.Errorf("starting ETW session %q: access denied: run kmemprof elevated", name)
	case errors.Is(err, errorNoSystemResource):
		return fmt.Errorf("starting ETW session %q: the system has no free logger session (too many ETW sessions running): %w", name, err)
	}
	return fmt.Errorf("starting ETW session %q: %w", name, err)
}

func (s *Session) start(name string, guid *goetw.GUID, mode uint32) error {
	props := goetw.NewRealTimeEventTraceSessionProperties(name)
	props.Wnode.Guid = *guid
	props.Wnode.Flags |= wnodeFlagTracedGUID
	props.Wnode.ClientContext = 1 // QPC timestamps: StackWalk's EventTimeStamp is raw QPC too
	props.LogFileMode |= mode
	props.EnableFlags = flags
	// Small buffers flushed every second, as PerfView sizes real-time
	// kernel sessions: each CPU's buffer reaches the consumer soon, which
	// keeps the events of different CPUs close in arrival.
	props.BufferSize = SessionBufferKB
	props.MinimumBuffers, props.MaximumBuffers = sessionBuffers(runtime.NumCPU())
	props.FlushTimer = 1
	u16, err := syscall.UTF16PtrFromString(name)
	if err != nil {
		return err
	}
	var h syscall.Handle
	if err := goetw.StartTrace(&h, u16, props); err != nil {
		return err
	}
	s.name, s.handle, s.props = name, h, props
	return nil
}

func (s *Session) stopByName(name string, guid *goetw.GUID) {
	props := goetw.NewRealTimeEventTraceSessionProperties(name)
	props.Wnode.Guid = *guid
	u16, err := syscall.UTF16PtrFromString(name)
	if err != nil {
		return
	}
	goetw.ControlTrace(0, u16, props, goetw.EVENT_TRACE_CONTROL_STOP)
}

// configure turns on kernel stacks for pool allocations, then the pool
// group: the other way round, the first allocations would come without
// stacks.
func (s *Session) configure() error {
	var ids []classicEventID
	// Frees need no stack (they are joined to their allocation by address):
	// walking stacks for allocations only halves the kernel's stack cost.
	for _, op := range []uint8{OpPoolAlloc, OpPoolAllocSession} {
		ids = append(ids, classicEventID{EventGUID: goetw.GUID(PoolTraceGUID), Type: op})
	}
	if err := traceSetInformation(s.handle, TraceStackTracingInfo, unsafe.Pointer(&ids[0]), uint32(len(ids))*uint32(unsafe.Sizeof(ids[0]))); err != nil {
		return fmt.Errorf("enabling kernel stacks for pool events: %w", err)
	}
	if len(s.cfg.Tags) > 0 {
		tags := make([]uint32, len(s.cfg.Tags))
		for i, t := range s.cfg.Tags {
			tags[i] = TagValue(t)
		}
		if err := setPoolTagFilter(s.handle, tags); err != nil {
			s.cfg.Notef("the kernel refused the pool tag filter (%v): filtering in kmemprof instead", err)
		}
	}
	var mask perfinfoGroupMask
	mask.Masks[0] = flags
	mask.Masks[PerfPoolGroupMask>>29] |= PerfPoolGroupMask & 0x1fffffff
	if err := traceSetInformation(s.handle, TraceSystemTraceEnableFlagsInfo, unsafe.Pointer(&mask), uint32(unsafe.Sizeof(mask))); err != nil {
		return fmt.Errorf("enabling pool events (PERF_POOL group mask): %w", err)
	}
	return nil
}

func (s *Session) startConsumer() error {
	callbacksOnce.Do(func() {
		eventCB = syscall.NewCallbackCDecl(onEvent)
		bufferCB = syscall.NewCallbackCDecl(onBuffer)
	})
	if !current.CompareAndSwap(nil, s) {
		return errors.New("another pool tracing session is running in this process")
	}
	var lf goetw.EventTraceLogfile
	u16, err := syscall.UTF16PtrFromString(s.name)
	if err != nil {
		current.Store(nil)
		return err
	}
	lf.LoggerName = u16
	// Raw timestamps: the header's TimeStamp stays in QPC units, as the
	// StackWalk payload's EventTimeStamp is, so stacks join their events exactly.
	lf.SetProcessTraceMode(goetw.PROCESS_TRACE_MODE_EVENT_RECORD | goetw.PROCESS_TRACE_MODE_REAL_TIME | goetw.PROCESS_TRACE_MODE_RAW_TIMESTAMP)
	lf.Callback = eventCB
	lf.BufferCallback = bufferCB
	h, err := goetw.OpenTrace(&lf)
	if err != nil {
		current.Store(nil)
		return fmt.Errorf("opening the real-time consumer of %q: %w", s.name, err)
	}
	s.trace = h
	go func() {
		s.done <- goetw.ProcessTrace(&s.trace, 1, nil, nil)
	}()
	return nil
}

// onBuffer keeps ProcessTrace going while this session is current.
func onBuffer(*goetw.EventTraceLogfile) uintptr {
	if current.Load() == nil {
		return 0
	}
	return 1
}

// onEvent decodes pool, stack and image events straight from the raw
// EVENT_RECORD, never through TDH, which cannot keep up with pool events.
func onEvent(er *goetw.EventRecord) uintptr {
	s := current.Load()
	if s == nil {
		return 0
	}
	s.events.Add(1)
	m := s.cfg.Matcher
	hd := &er.EventHeader
	ptrSize := 8
	if hd.Flags&goetw.EVENT_HEADER_FLAG_32_BIT_HEADER != 0 {
		ptrSize = 4
	}
	var payload []byte
	if er.UserDataLength > 0 && er.UserData != 0 {
		// UserData is a uintptr field holding a pointer into the ETW buffer,
		// valid for the duration of the callback; read it as a pointer.
		data := *(*unsafe.Pointer)(unsafe.Pointer(&er.UserData))
		payload = unsafe.Slice((*byte)(data), er.UserDataLength)
	}
	cpu := er.BufferContext.Union & 0xff // ProcessorNumber
	if hd.Flags&eventHeaderFlagProcessorIndex != 0 {
		cpu = er.BufferContext.Union // ProcessorIndex: more than 256 CPUs
	}
	h := Header{ThreadID: hd.ThreadId, ProcessID: hd.ProcessId, TimeStamp: hd.TimeStamp, CPU: cpu, Version: hd.EventDescriptor.Version}
	m.Event(GUID(hd.ProviderId), hd.EventDescriptor.Opcode, h, payload, ptrSize)
	return 0
}

// Events returns how many events the consumer has seen.
func (s *Session) Events() uint64 { return s.events.Load() }

// Stop stops the kernel session, waits (up to DrainTimeout) for the
// consumer to deliver what the session flushed, and adds what the session
// reports lost to the matcher. A session that cannot be stopped, or a
// consumer that does not finish, is a note, not an error: the Matcher
// keeps what was delivered. It is safe to call more than once.
func (s *Session) Stop() error {
	s.stopOnce.Do(func() {
		if s.trace == 0 {
			s.stopSession()
		} else {
			stopAndDrain(s, s.done, DrainTimeout, s.cfg.Matcher, s.cfg.Notef)
		}
		current.CompareAndSwap(s, nil)
		s.releaseLock()
	})
	return nil
}

// stopSession stops the kernel session and returns what it reports lost.
func (s *Session) stopSession() (SessionLosses, error) {
	if s.handle == 0 {
		return SessionLosses{}, nil
	}
	err := goetw.ControlTrace(s.handle, nil, s.props, goetw.EVENT_TRACE_CONTROL_STOP)
	s.handle = 0
	if err != nil {
		return SessionLosses{}, fmt.Errorf("stopping ETW session %q: %w", s.name, err)
	}
	return SessionLosses{
		Events:          uint64(s.props.EventsLost),
		RealtimeBuffers: uint64(s.props.RealTimeBuffersLost),
		LogBuffers:      uint64(s.props.LogBuffersLost),
	}, nil
}

// closeConsumer closes the real-time consumer.
func (s *Session) closeConsumer() error {
	if s.trace == 0 {
		return nil
	}
	err := goetw.CloseTrace(s.trace)
	s.trace = 0
	return err
}

// detach stops the callbacks from feeding the matcher.
func (s *Session) detach() { current.CompareAndSwap(s, nil) }

// enablePrivilege enables a privilege the process token holds.
func enablePrivilege(name string) error {
	var luid windows.LUID
	if err := windows.LookupPrivilegeValue(nil, windows.StringToUTF16Ptr(name), &luid); err != nil {
		return fmt.Errorf("looking up %s: %w", name, err)
	}
	var token windows.Token
	if err := windows.OpenProcessToken(windows.CurrentProcess(), windows.TOKEN_ADJUST_PRIVILEGES|windows.TOKEN_QUERY, &token); err != nil {
		return fmt.Errorf("opening the process token: %w", err)
	}
	defer token.Close()
	tp := windows.Tokenprivileges{PrivilegeCount: 1}
	tp.Privileges[0] = windows.LUIDAndAttributes{Luid: luid, Attributes: windows.SE_PRIVILEGE_ENABLED}
	// AdjustTokenPrivileges succeeds, and sets the last error to
	// ERROR_NOT_ALL_ASSIGNED, when the token does not hold the privilege.
	// x/sys/windows's wrapper drops the last error of a successful call,
	// and Go may clear it before a later GetLastError: read it from this
	// call's own result.
	r, _, lastErr := procAdjustTokenPrivileges.Call(uintptr(token), 0, uintptr(unsafe.Pointer(&tp)), 0, 0, 0)
	runtime.KeepAlive(&tp)
	if r == 0 {
		return fmt.Errorf("AdjustTokenPrivileges: %w", lastErr)
	}
	if errors.Is(lastErr, windows.ERROR_NOT_ALL_ASSIGNED) {
		return fmt.Errorf("the account does not hold %s", name)
	}
	return nil
}
