//go:build windows

package etw

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	goetw "github.com/0xrawsec/golang-etw/etw"
	"golang.org/x/sys/windows"
)

// The Win32 side of a pool tracing session (win32, sessionlogic.go): the
// logic is there, tested on every OS against a fake of these calls.

// kmemprofSessionGUID identifies kmemprof's private system logger.
var kmemprofSessionGUID = goetw.MustParseGUIDFromString("{6c0f3a6e-1f5e-4c1b-9b6d-6b6d70726f66}")

// The EVENT_TRACE_PROPERTIES values of sessionlogic.go are golang-etw's
// (a compile-time check: an index out of range if one differs).
var (
	_ = [1]struct{}{}[goetw.WNODE_FLAG_ALL_DATA^wnodeFlagAllData]
	_ = [1]struct{}{}[goetw.EVENT_TRACE_REAL_TIME_MODE^eventTraceRealTimeMode]
	_ = [1]struct{}{}[goetw.EVENT_TRACE_SYSTEM_LOGGER_MODE^eventTraceSystemLoggerMode]
)

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
	core *sessionCore
	api  *winAPI
	// matcher receives the events; set before the consumer starts, which
	// may deliver before StartSession returns.
	matcher *Matcher
	events  atomic.Uint64
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
// real-time consumer (see startSessionWith). The errors say what is
// missing: elevation, SeSystemProfilePrivilege, or a logger session.
func StartSession(cfg SessionConfig) (*Session, error) {
	s := &Session{Kernel: "private system logger", matcher: cfg.Matcher}
	s.api = &winAPI{s: s}
	core, err := startSessionWith(s.api, cfg)
	if err != nil {
		return nil, err
	}
	s.core = core
	return s, nil
}

// Events returns how many events the consumer has seen.
func (s *Session) Events() uint64 { return s.events.Load() }

// Stop stops the kernel session, waits (up to DrainTimeout) for the
// consumer to deliver what the session flushed, and adds what the session
// reports lost to the matcher. A session that cannot be stopped, or a
// consumer that does not finish, is a note, not an error: the Matcher
// keeps what was delivered. It is safe to call more than once.
func (s *Session) Stop() error {
	s.core.stop()
	return nil
}

// winAPI makes the Win32 calls of a session (win32).
type winAPI struct {
	s      *Session
	handle syscall.Handle // controller handle (StartTrace)
	props  *goetw.EventTraceProperties
	trace  syscall.Handle // consumer handle (OpenTrace)
}

func (w *winAPI) elevated() bool { return windows.GetCurrentProcessToken().IsElevated() }

// takeLock creates the named mutex: the object exists as long as a process
// holds a handle to it, so its existence, not its ownership (which Windows
// gives to one thread, and Go moves goroutines between threads), tells. A
// kmemprof that died left no handle, and no object.
func (w *winAPI) takeLock(name string) (func(), error) {
	u16, err := windows.UTF16PtrFromString(name)
	if err != nil {
		return nil, err
	}
	h, err := windows.CreateMutex(nil, false, u16)
	switch {
	case h != 0 && errors.Is(err, windows.ERROR_ALREADY_EXISTS):
		windows.CloseHandle(h)
		return nil, errLockHeld
	case h == 0:
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(func() { windows.CloseHandle(h) }) }, nil
}

func (w *winAPI) startTrace(name string, p sessionProps) error {
	props := goetw.NewRealTimeEventTraceSessionProperties(name)
	props.Wnode.Guid = *kmemprofSessionGUID
	f := p.fields()
	props.Wnode.Flags, props.Wnode.ClientContext, props.LogFileMode = f.WnodeFlags, f.ClientContext, f.LogFileMode
	props.EnableFlags, props.BufferSize = f.EnableFlags, f.BufferSize
	props.MinimumBuffers, props.MaximumBuffers, props.FlushTimer = f.MinimumBuffers, f.MaximumBuffers, f.FlushTimer
	u16, err := syscall.UTF16PtrFromString(name)
	if err != nil {
		return err
	}
	var h syscall.Handle
	if err := goetw.StartTrace(&h, u16, props); err != nil {
		return err
	}
	w.handle, w.props = h, props
	return nil
}

func (w *winAPI) stopTraceByName(name string) {
	props := goetw.NewRealTimeEventTraceSessionProperties(name)
	props.Wnode.Guid = *kmemprofSessionGUID
	u16, err := syscall.UTF16PtrFromString(name)
	if err != nil {
		return
	}
	goetw.ControlTrace(0, u16, props, goetw.EVENT_TRACE_CONTROL_STOP)
}

func (w *winAPI) enableStacks(events []stackEvent) error {
	ids := make([]classicEventID, len(events))
	for i, e := range events {
		ids[i] = classicEventID{EventGUID: goetw.GUID(e.Class), Type: e.Op}
	}
	return traceSetInformation(w.handle, TraceStackTracingInfo, unsafe.Pointer(&ids[0]), uint32(len(ids))*uint32(unsafe.Sizeof(ids[0])))
}

func (w *winAPI) setTagFilter(tags []uint32) error { return setPoolTagFilter(w.handle, tags) }

func (w *winAPI) enableGroups(masks [8]uint32) error {
	mask := perfinfoGroupMask{Masks: masks}
	return traceSetInformation(w.handle, TraceSystemTraceEnableFlagsInfo, unsafe.Pointer(&mask), uint32(unsafe.Sizeof(mask)))
}

func (w *winAPI) openConsumer(name string, done chan<- error) error {
	callbacksOnce.Do(func() {
		eventCB = syscall.NewCallbackCDecl(onEvent)
		bufferCB = syscall.NewCallbackCDecl(onBuffer)
	})
	if !current.CompareAndSwap(nil, w.s) {
		return errors.New("another pool tracing session is running in this process")
	}
	var lf goetw.EventTraceLogfile
	u16, err := syscall.UTF16PtrFromString(name)
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
		return err
	}
	w.trace = h
	go func() {
		done <- goetw.ProcessTrace(&w.trace, 1, nil, nil)
	}()
	return nil
}

func (w *winAPI) osVersion() string {
	v := windows.RtlGetVersion()
	return fmt.Sprintf("Windows %d.%d build %d", v.MajorVersion, v.MinorVersion, v.BuildNumber)
}

// stopSession stops the kernel session and returns what it reports lost.
func (w *winAPI) stopSession() (SessionLosses, error) {
	if w.handle == 0 {
		return SessionLosses{}, nil
	}
	err := goetw.ControlTrace(w.handle, nil, w.props, goetw.EVENT_TRACE_CONTROL_STOP)
	w.handle = 0
	if err != nil {
		return SessionLosses{}, fmt.Errorf("stopping ETW session %q: %w", SessionName, err)
	}
	return SessionLosses{
		Events:          uint64(w.props.EventsLost),
		RealtimeBuffers: uint64(w.props.RealTimeBuffersLost),
		LogBuffers:      uint64(w.props.LogBuffersLost),
	}, nil
}

// closeConsumer closes the real-time consumer.
func (w *winAPI) closeConsumer() error {
	if w.trace == 0 {
		return nil
	}
	err := goetw.CloseTrace(w.trace)
	w.trace = 0
	return err
}

// detach stops the callbacks from feeding the matcher.
func (w *winAPI) detach() { current.CompareAndSwap(w.s, nil) }

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
	m := s.matcher
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

func (w *winAPI) enablePrivilege(name string) error { return enablePrivilege(name) }

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
