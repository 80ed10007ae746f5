package etw

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeWin32 records the calls a session makes and answers as told.
type fakeWin32 struct {
	mu         sync.Mutex
	calls      []string
	notElev    bool
	privErr    error
	lockErr    error
	startErrs  []error // one a startTrace call, then nil
	stacksErr  error
	filterErr  error
	groupsErr  error
	openErr    error
	props      sessionProps
	stackEvs   []stackEvent
	tags       []uint32
	masks      [8]uint32
	done       chan<- error
	released   int
	consumerOn bool
}

func (f *fakeWin32) log(c string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
}

func (f *fakeWin32) elevated() bool { f.log("elevated"); return !f.notElev }
func (f *fakeWin32) enablePrivilege(name string) error {
	f.log("privilege " + name)
	return f.privErr
}
func (f *fakeWin32) takeLock(name string) (func(), error) {
	f.log("lock " + name)
	if f.lockErr != nil {
		return nil, f.lockErr
	}
	return func() { f.log("release"); f.released++ }, nil
}
func (f *fakeWin32) startTrace(name string, p sessionProps) error {
	f.log("start " + name)
	f.props = p
	if len(f.startErrs) > 0 {
		err := f.startErrs[0]
		f.startErrs = f.startErrs[1:]
		return err
	}
	return nil
}
func (f *fakeWin32) stopTraceByName(name string) { f.log("stop-by-name " + name) }
func (f *fakeWin32) enableStacks(evs []stackEvent) error {
	f.log("stacks")
	f.stackEvs = evs
	return f.stacksErr
}
func (f *fakeWin32) setTagFilter(tags []uint32) error {
	f.log("filter")
	f.tags = tags
	return f.filterErr
}
func (f *fakeWin32) enableGroups(m [8]uint32) error {
	f.log("groups")
	f.masks = m
	return f.groupsErr
}
func (f *fakeWin32) openConsumer(name string, done chan<- error) error {
	f.log("open " + name)
	if f.openErr != nil {
		return f.openErr
	}
	f.done, f.consumerOn = done, true
	return nil
}
func (f *fakeWin32) osVersion() string { return "Windows 10.0 build 22631" }
func (f *fakeWin32) stopSession() (SessionLosses, error) {
	f.log("stop")
	if f.consumerOn {
		// The session flushes; the consumer delivers and returns.
		go func() { f.done <- nil }()
	}
	return SessionLosses{Events: 2}, nil
}
func (f *fakeWin32) closeConsumer() error { f.log("close"); return nil }
func (f *fakeWin32) detach()              { f.log("detach") }

func startFake(t *testing.T, f *fakeWin32, tags ...string) (*sessionCore, []string, error) {
	return startFakeWith(t, f, false, tags...)
}

// startFakeWith is startFake with SessionConfig.StopLeftover.
func startFakeWith(t *testing.T, f *fakeWin32, stopLeftover bool, tags ...string) (*sessionCore, []string, error) {
	t.Helper()
	var notes []string
	c, err := startSessionWith(f, SessionConfig{Matcher: NewMatcher(MatcherConfig{}), Tags: tags, StopLeftover: stopLeftover,
		Notef: func(format string, a ...any) { notes = append(notes, format) }})
	if c != nil {
		c.retryWaits = nil
	}
	return c, notes, err
}

// TestSessionStartOrder: the checks, the mutex, the session with its
// properties, stacks for allocations before the pool group, the tag
// filter, then the consumer; stopping stops, drains, closes, detaches and
// releases, once.
func TestSessionStartOrder(t *testing.T) {
	f := &fakeWin32{}
	c, notes, err := startFake(t, f, "Leak")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"elevated", "privilege SeSystemProfilePrivilege", "lock " + sessionLockName, "start " + SessionName,
		"stacks", "filter", "groups", "open " + SessionName}
	if !slices.Equal(f.calls, want) {
		t.Errorf("calls %q, want %q", f.calls, want)
	}
	if len(notes) != 0 {
		t.Errorf("notes %q", notes)
	}
	p := f.props
	if !p.SystemLogger || !p.QPC || !p.TracedGUID || p.FlushTimer != 1 || p.BufferKB != SessionBufferKB || p.EnableFlags != 7 || p.MinBuffers == 0 || p.MaxBuffers < p.MinBuffers {
		t.Errorf("session properties %+v", p)
	}
	if !slices.Equal(f.stackEvs, []stackEvent{{PoolTraceGUID, OpPoolAlloc}, {PoolTraceGUID, OpPoolAllocSession}}) {
		t.Errorf("stacks asked for %v, want the allocations only", f.stackEvs)
	}
	if !slices.Equal(f.tags, []uint32{TagValue("Leak")}) {
		t.Errorf("tag filter %x", f.tags)
	}
	if f.masks[0] != 7 || f.masks[1] != 0x40 {
		t.Errorf("group masks %x, want EnableFlags 7 and PERF_POOL (Masks[1] 0x40)", f.masks)
	}
	f.calls = nil
	c.stop()
	c.stop()
	if want := []string{"stop", "close", "detach", "release"}; !slices.Equal(f.calls, want) {
		t.Errorf("stop calls %q, want %q", f.calls, want)
	}
	if v := counter(c.cfg.Matcher.Counters(), CounterEventsLost); v != 2 {
		t.Errorf("events_lost = %d, want the session's 2", v)
	}
}

// TestSessionStartRefusals: each refusal says what is missing, and undoes
// what was done (the session stopped, the mutex released).
func TestSessionStartRefusals(t *testing.T) {
	for _, tc := range []struct {
		name     string
		f        *fakeWin32
		tags     []string
		want     string
		notWant  string
		released int
		stopped  bool
	}{
		{"five tags", &fakeWin32{}, []string{"a", "b", "c", "d", "e"}, "at most 4 pool tags", "", 0, false},
		{"not elevated", &fakeWin32{notElev: true}, nil, "must run elevated", "", 0, false},
		{"no privilege", &fakeWin32{privErr: errors.New("the account does not hold SeSystemProfilePrivilege")}, nil, "SeSystemProfilePrivilege is needed", "", 0, false},
		{"another kmemprof", &fakeWin32{lockErr: errLockHeld}, nil, "another kmemprof is tracing", "", 0, false},
		{"mutex error", &fakeWin32{lockErr: errors.New("boom")}, nil, "creating the mutex", "", 0, false},
		{"invalid parameter", &fakeWin32{startErrs: []error{errorInvalidParameter}}, nil, "Windows 10.0 build 22631 refused its properties", "needs Windows 10", 1, false},
		{"access denied", &fakeWin32{startErrs: []error{errorAccessDenied}}, nil, "run kmemprof elevated", "", 1, false},
		{"no logger free", &fakeWin32{startErrs: []error{errorNoSystemResource}}, nil, "no free logger session", "", 1, false},
		{"leftover", &fakeWin32{startErrs: []error{errorAlreadyExists, errorAlreadyExists, errorAlreadyExists, errorAlreadyExists, errorAlreadyExists, errorAlreadyExists}}, nil, "logman stop", "", 1, false},
		{"stacks refused", &fakeWin32{stacksErr: errors.New("ERROR_NOT_SUPPORTED")}, nil, "enabling kernel stacks", "", 1, true},
		{"groups refused", &fakeWin32{groupsErr: errors.New("ERROR_NOT_SUPPORTED")}, nil, "PERF_POOL", "", 1, true},
		{"consumer refused", &fakeWin32{openErr: errors.New("ERROR_ACCESS_DENIED")}, nil, "opening the real-time consumer", "", 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			saved := defaultRetryWaits
			defaultRetryWaits = nil
			defer func() { defaultRetryWaits = saved }()
			_, _, err := startFake(t, tc.f, tc.tags...)
			if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.notWant != "" && strings.Contains(err.Error(), tc.notWant)) {
				t.Errorf("error %v, want one that says %q", err, tc.want)
			}
			if tc.f.released != tc.released {
				t.Errorf("mutex released %d times, want %d", tc.f.released, tc.released)
			}
			if stopped := slices.Contains(tc.f.calls, "stop"); stopped != tc.stopped {
				t.Errorf("session stopped %v, want %v (calls %q)", stopped, tc.stopped, tc.f.calls)
			}
		})
	}
}

// TestSessionLeftover: a session of kmemprof's name found at start (a
// kmemprof that died) is an ErrLeftover that names the flag and logman,
// nothing stopped; with StopLeftover it is stopped, with a note, and
// started again once it is gone.
func TestSessionLeftover(t *testing.T) {
	saved := defaultRetryWaits
	defaultRetryWaits = []time.Duration{time.Millisecond, time.Millisecond, time.Millisecond}
	defer func() { defaultRetryWaits = saved }()

	f := &fakeWin32{startErrs: []error{errorAlreadyExists, errorAlreadyExists}}
	_, _, err := startFake(t, f)
	if !errors.Is(err, ErrLeftover) || !strings.Contains(err.Error(), "--stop-leftover") || !strings.Contains(err.Error(), `logman stop "kmemprof Pool Logger" -ets`) {
		t.Errorf("a leftover without StopLeftover: %v", err)
	}
	if slices.Contains(f.calls, "stop-by-name "+SessionName) || f.released != 1 {
		t.Errorf("calls %q, mutex released %d times: want nothing stopped, the mutex released", f.calls, f.released)
	}

	f = &fakeWin32{startErrs: []error{errorAlreadyExists, errorAlreadyExists}}
	c, notes, err := startFakeWith(t, f, true)
	if err != nil {
		t.Fatal(err)
	}
	defer c.stop()
	starts := 0
	for _, call := range f.calls {
		if strings.HasPrefix(call, "start ") {
			starts++
		}
	}
	if starts != 3 || !slices.Contains(f.calls, "stop-by-name "+SessionName) {
		t.Errorf("calls %q, want the leftover stopped and the start tried until it goes", f.calls)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "left by an earlier kmemprof") {
		t.Errorf("notes %q", notes)
	}

	// One that does not go when stopped.
	defaultRetryWaits = nil
	f = &fakeWin32{startErrs: []error{errorAlreadyExists, errorAlreadyExists, errorAlreadyExists}}
	if _, _, err := startFakeWith(t, f, true); err == nil || !strings.Contains(err.Error(), "still running after it was stopped") || !strings.Contains(err.Error(), "logman stop") || f.released != 1 {
		t.Errorf("a leftover that stays: %v, mutex released %d times", err, f.released)
	}
}

// TestSessionTagFilterRefused: a kernel that refuses the tag filter is a
// note; kmemprof filters itself.
func TestSessionTagFilterRefused(t *testing.T) {
	f := &fakeWin32{filterErr: errors.New("NTSTATUS 0xc0000004")}
	c, notes, err := startFake(t, f, "Leak")
	if err != nil {
		t.Fatal(err)
	}
	defer c.stop()
	if len(notes) != 1 || !strings.Contains(notes[0], "refused the pool tag filter") {
		t.Errorf("notes %q", notes)
	}
}

// TestTraceFields: the EVENT_TRACE_PROPERTIES kmemprof starts its session
// with, as Windows reads them: WNODE_FLAG_TRACED_GUID in Wnode.Flags (the
// documentation's requirement), QPC time stamps (ClientContext 1: StackWalk
// events carry QPC), a private system logger in real-time mode, the process,
// thread and image-load kernel flags, 64 KB buffers flushed every second.
func TestTraceFields(t *testing.T) {
	lo, hi := sessionBuffers(4)
	got := props(4).fields()
	want := traceFields{WnodeFlags: 0x00020001, ClientContext: 1, LogFileMode: 0x02000100, EnableFlags: 0x7,
		BufferSize: 64, MinimumBuffers: lo, MaximumBuffers: hi, FlushTimer: 1}
	if got != want {
		t.Errorf("fields %+v, want %+v", got, want)
	}
}
