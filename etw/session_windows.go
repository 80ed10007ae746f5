//go:build windows

package etw

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
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

// systemTraceControlGUID is the NT Kernel Logger's session GUID.
var systemTraceControlGUID = goetw.MustParseGUIDFromString("{9e814aad-3204-11d2-9a82-006008a86939}")

var (
	winPoolGUID      = goetw.MustParseGUIDFromString("{0268a8b6-74fd-4302-9dd0-6e8f1795c0cf}")
	winStackWalkGUID = goetw.MustParseGUIDFromString("{def2fe46-7bd6-4b80-bd94-f57fe20d0ce3}")
	winImageGUID     = goetw.MustParseGUIDFromString("{2cb15d1d-5fc1-11d2-abe1-00a0c911f518}")
	winLostEventGUID = goetw.MustParseGUIDFromString("{6a399ae0-4bc6-4de9-870b-3657f8947e7e}")
)

// Windows error codes StartTrace returns.
const (
	errorAlreadyExists    = syscall.Errno(183)
	errorAccessDenied     = syscall.Errno(5)
	errorInvalidParameter = syscall.Errno(87)
	errorNoSystemResource = syscall.Errno(1450)
)

var (
	advapi32                = windows.NewLazySystemDLL("advapi32.dll")
	procTraceSetInformation = advapi32.NewProc("TraceSetInformation")
)

// traceSetInformation calls advapi32!TraceSetInformation, which golang-etw
// does not wrap.
func traceSetInformation(h syscall.Handle, class uint32, info unsafe.Pointer, size uint32) error {
	if err := procTraceSetInformation.Find(); err != nil {
		return fmt.Errorf("TraceSetInformation is not available (Windows 8 or later is needed): %w", err)
	}
	r, _, _ := procTraceSetInformation.Call(uintptr(h), uintptr(class), uintptr(info), uintptr(size))
	if r != 0 {
		return syscall.Errno(r)
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

// traceInfoPoolTagFilter is TRACE_INFO_CLASS 15, "TraceInfoReserved15" in
// today's SDK and TracePoolTagFilter in the Windows 8 one: up to four ULONG
// pool tags the kernel filters pool events by. It is undocumented, so a
// refusal only means the filter runs in kmemprof instead.
const traceInfoPoolTagFilter = 15

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
	rtLost   atomic.Uint64 // RT_LostEvent events: buffers the consumer never got
	stopOnce sync.Once
	stopErr  error
	// Kernel is "private system logger" or "NT Kernel Logger".
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
	if err := s.startController(); err != nil {
		return nil, err
	}
	if err := s.configure(); err != nil {
		s.stopController()
		return nil, err
	}
	if err := s.startConsumer(); err != nil {
		s.stopController()
		return nil, err
	}
	return s, nil
}

const flags = goetw.EVENT_TRACE_FLAG_PROCESS | goetw.EVENT_TRACE_FLAG_THREAD | goetw.EVENT_TRACE_FLAG_IMAGE_LOAD

func (s *Session) startController() error {
	// A private system logger (Windows 8+) does not collide with other tools
	// that use the NT Kernel Logger (xperf, WPR, Process Monitor...).
	err := s.start(SessionName, kmemprofSessionGUID, goetw.EVENT_TRACE_SYSTEM_LOGGER_MODE)
	if errors.Is(err, errorAlreadyExists) {
		s.cfg.Notef("a %q session left by an earlier kmemprof was running: stopped and started again", SessionName)
		s.stopByName(SessionName, kmemprofSessionGUID)
		err = s.start(SessionName, kmemprofSessionGUID, goetw.EVENT_TRACE_SYSTEM_LOGGER_MODE)
	}
	if err == nil {
		s.Kernel = "private system logger"
		return nil
	}
	if !errors.Is(err, errorInvalidParameter) {
		return startError(SessionName, err)
	}
	// Before Windows 8 only the NT Kernel Logger carries kernel events.
	err = s.start(goetw.NtKernelLogger, systemTraceControlGUID, 0)
	if errors.Is(err, errorAlreadyExists) {
		return fmt.Errorf("the NT Kernel Logger is in use by another tool (xperf, WPR, Process Monitor, ...): " +
			"stop it (e.g. 'xperf -stop' or 'logman stop \"NT Kernel Logger\" -ets') and try again")
	}
	if err != nil {
		return startError(goetw.NtKernelLogger, err)
	}
	s.Kernel = "NT Kernel Logger"
	return nil
}

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
	props.Wnode.ClientContext = 1 // QPC timestamps: StackWalk's EventTimeStamp is raw QPC too
	props.LogFileMode |= mode
	props.EnableFlags = flags
	props.BufferSize = 1024 // KB: pool events come in bursts
	props.MinimumBuffers = 64
	props.MaximumBuffers = 256
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

// configure turns on the pool group and kernel stacks for pool events.
func (s *Session) configure() error {
	var mask perfinfoGroupMask
	mask.Masks[0] = flags
	mask.Masks[PerfPoolGroupMask>>29] |= PerfPoolGroupMask & 0x1fffffff
	if err := traceSetInformation(s.handle, TraceSystemTraceEnableFlagsInfo, unsafe.Pointer(&mask), uint32(unsafe.Sizeof(mask))); err != nil {
		return fmt.Errorf("enabling pool events (PERF_POOL group mask): %w", err)
	}
	var ids []classicEventID
	// Frees need no stack (they are joined to their allocation by address):
	// walking stacks for allocations only halves the kernel's stack cost.
	for _, op := range []uint8{OpPoolAlloc, OpPoolAllocSession} {
		ids = append(ids, classicEventID{EventGUID: *winPoolGUID, Type: op})
	}
	if err := traceSetInformation(s.handle, TraceStackTracingInfo, unsafe.Pointer(&ids[0]), uint32(len(ids))*uint32(unsafe.Sizeof(ids[0]))); err != nil {
		return fmt.Errorf("enabling kernel stacks for pool events: %w", err)
	}
	if len(s.cfg.Tags) > 0 {
		tags := make([]uint32, len(s.cfg.Tags))
		for i, t := range s.cfg.Tags {
			tags[i] = TagValue(t)
		}
		if err := traceSetInformation(s.handle, traceInfoPoolTagFilter, unsafe.Pointer(&tags[0]), uint32(4*len(tags))); err != nil {
			s.cfg.Notef("the kernel refused the pool tag filter (%v): filtering in kmemprof instead", err)
		}
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
	h := Header{ThreadID: hd.ThreadId, ProcessID: hd.ProcessId, TimeStamp: hd.TimeStamp, CPU: uint16(er.BufferContext.Union & 0xff)}
	op := hd.EventDescriptor.Opcode
	switch {
	case hd.ProviderId.Equals(winPoolGUID):
		ev, err := DecodePool(op, payload, ptrSize)
		if err != nil {
			m.DecodeError(err)
			return 0
		}
		m.Pool(h, ev)
	case hd.ProviderId.Equals(winStackWalkGUID):
		ev, err := DecodeStack(payload, ptrSize)
		if err != nil {
			m.DecodeError(err)
			return 0
		}
		m.Stack(h, ev)
	case hd.ProviderId.Equals(winImageGUID):
		ev, err := DecodeImage(op, payload, ptrSize)
		if errors.Is(err, ErrUnknownOpcode) {
			return 0 // image opcodes kmemprof does not use
		}
		if err != nil {
			m.DecodeError(err)
			return 0
		}
		m.Image(h, ev)
	case hd.ProviderId.Equals(winLostEventGUID):
		s.rtLost.Add(1)
	}
	return 0
}

// Events returns how many events the consumer has seen.
func (s *Session) Events() uint64 { return s.events.Load() }

// Stop stops the kernel session, waits for the consumer to deliver what was
// buffered, and adds the events the session reports lost to the matcher. It
// is safe to call more than once.
func (s *Session) Stop() error {
	s.stopOnce.Do(func() {
		lost := s.stopController()
		if s.trace != 0 {
			goetw.CloseTrace(s.trace)
			if err := <-s.done; err != nil && !errors.Is(err, syscall.Errno(1223) /* ERROR_CANCELLED */) {
				s.stopErr = fmt.Errorf("consuming ETW events: %w", err)
			}
		}
		current.CompareAndSwap(s, nil)
		// EventsLost (the session's count) and the RT_LostEvent events (lost
		// real-time buffers) can describe the same loss: report the larger,
		// never the sum.
		if n := max(uint64(lost), s.rtLost.Load()); n > 0 {
			s.cfg.Matcher.Lost(n)
		}
	})
	return s.stopErr
}

// stopController stops the kernel session and returns its EventsLost.
func (s *Session) stopController() uint32 {
	if s.handle == 0 {
		return 0
	}
	err := goetw.ControlTrace(s.handle, nil, s.props, goetw.EVENT_TRACE_CONTROL_STOP)
	s.handle = 0
	if err != nil {
		s.stopErr = fmt.Errorf("stopping ETW session %q: %w", s.name, err)
		return 0
	}
	return s.props.EventsLost
}

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
	if err := windows.AdjustTokenPrivileges(token, false, &tp, 0, nil, nil); err != nil {
		return err
	}
	// AdjustTokenPrivileges succeeds with ERROR_NOT_ALL_ASSIGNED when the
	// token does not hold the privilege.
	if errno := windows.GetLastError(); errno == windows.ERROR_NOT_ALL_ASSIGNED {
		return fmt.Errorf("the account does not hold %s", name)
	}
	return nil
}
