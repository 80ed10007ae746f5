package etw

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeController is a session whose consumer is a goroutine feeding a
// Matcher: what it delivers after STOP models the buffers a session
// flushes when it stops, a moment later. Like CloseTrace, closing the
// consumer stops delivery: a buffer not delivered by then is lost, and
// ProcessTrace returns ERROR_CANCELLED.
type fakeController struct {
	m        *Matcher
	done     chan error
	tail     func(*Matcher) // delivered after STOP
	stopErr  error
	losses   SessionLosses
	hang     bool // the consumer never returns
	closed   atomic.Bool
	detached atomic.Bool
}

func (f *fakeController) stopSession() (SessionLosses, error) {
	if !f.hang {
		go func() {
			// The session flushes its buffers to the consumer after the
			// stop returns.
			time.Sleep(20 * time.Millisecond)
			if f.closed.Load() {
				f.done <- errorCancelled
				return
			}
			if f.tail != nil {
				f.tail(f.m)
			}
			f.done <- nil
		}()
	}
	return f.losses, f.stopErr
}

func (f *fakeController) closeConsumer() error { f.closed.Store(true); return nil }
func (f *fakeController) detach()              { f.detached.Store(true) }

func allocEv(m *Matcher, tid uint32, ts int64, addr uint64) {
	m.Event(PoolTraceGUID, OpPoolAlloc, Header{ThreadID: tid, ProcessID: 4, TimeStamp: ts}, poolPayload(OpPoolAlloc, 8, 512, TagValue("Leak"), 64, addr, 0), 8)
}

func freeEv(m *Matcher, tid uint32, ts int64, addr uint64) {
	m.Event(PoolTraceGUID, OpPoolFree, Header{ThreadID: tid, ProcessID: 4, TimeStamp: ts}, poolPayload(OpPoolFree, 8, 512, TagValue("Leak"), 64, addr, 0), 8)
}

type notes []string

func (n *notes) f(format string, a ...any) {
	*n = append(*n, strings.TrimSpace(strings.ReplaceAll(format, "%", "")))
}

// TestStopDrainsTail: frees delivered after STOP (the buffers the session
// flushes) meet their allocations; the session's losses are counted in
// their units; no note.
func TestStopDrainsTail(t *testing.T) {
	m := NewMatcher(MatcherConfig{RawTimestamps: true})
	allocEv(m, 1, 10, 0xffffa00000001000)
	allocEv(m, 1, 11, 0xffffa00000002000)
	f := &fakeController{m: m, done: make(chan error, 1), losses: SessionLosses{Events: 7, RealtimeBuffers: 2, LogBuffers: 1},
		tail: func(m *Matcher) { freeEv(m, 2, 12, 0xffffa00000001000) }}
	var n notes
	stopAndDrain(f, f.done, time.Minute, m, n.f)
	if len(n) != 0 {
		t.Errorf("notes: %q", n)
	}
	if got := outstandingAddrs(m); len(got) != 1 || got[0] != 0xffffa00000002000 {
		t.Errorf("outstanding %x, want only the allocation never freed", got)
	}
	cs := m.Counters()
	for name, want := range map[string]uint64{CounterEventsLost: 7, CounterRealtimeBuffersLost: 2, CounterLogBuffersLost: 1, CounterFreed: 1} {
		if got := counter(cs, name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	if !f.closed.Load() {
		t.Errorf("consumer not closed after it returned")
	}
}

// TestStopErrorIsAWarning: a session that cannot be stopped (stopped
// already by another tool) is a note; what was delivered stays.
func TestStopErrorIsAWarning(t *testing.T) {
	m := NewMatcher(MatcherConfig{RawTimestamps: true})
	allocEv(m, 1, 10, 0xffffa00000001000)
	f := &fakeController{m: m, done: make(chan error, 1), stopErr: errors.New("ERROR_WMI_INSTANCE_NOT_FOUND")}
	var n notes
	stopAndDrain(f, f.done, time.Minute, m, n.f)
	if len(n) != 1 || !strings.Contains(n[0], "stopping the ETW session") {
		t.Errorf("notes %q, want one about stopping", n)
	}
	if got := outstandingAddrs(m); len(got) != 1 {
		t.Errorf("outstanding %x, want the allocation delivered before", got)
	}
}

// TestStopHungConsumer: a consumer that does not finish is closed after
// the timeout, with a note that says what that costs, and detached.
func TestStopHungConsumer(t *testing.T) {
	m := NewMatcher(MatcherConfig{RawTimestamps: true})
	f := &fakeController{m: m, done: make(chan error), hang: true}
	var n notes
	start := time.Now()
	stopAndDrain(f, f.done, 50*time.Millisecond, m, n.f)
	if time.Since(start) > 10*time.Second {
		t.Errorf("stop took %s", time.Since(start))
	}
	if len(n) != 2 || !strings.Contains(n[0], "had not delivered") || !strings.Contains(n[0], "lost") {
		t.Errorf("notes %q, want the timeout explained", n)
	}
	if !f.closed.Load() || !f.detached.Load() {
		t.Errorf("closed %v detached %v, want both", f.closed.Load(), f.detached.Load())
	}
}
