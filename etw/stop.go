package etw

import (
	"errors"
	"syscall"
	"time"
)

// SessionLosses are what an ETW session reports lost when it stops
// (EVENT_TRACE_PROPERTIES): events, and buffers not delivered in real time
// or not written.
type SessionLosses struct {
	Events, RealtimeBuffers, LogBuffers uint64
}

// controller is what stopping needs of a running session and its
// real-time consumer.
type controller interface {
	// stopSession stops the kernel session (ControlTrace STOP) and returns
	// what it reports lost. The session then flushes its buffers to the
	// consumer, whose ProcessTrace returns once it delivered them.
	stopSession() (SessionLosses, error)
	// closeConsumer closes the consumer (CloseTrace): a ProcessTrace still
	// delivering returns, and what it did not deliver is lost.
	closeConsumer() error
	// detach stops feeding events to the Matcher.
	detach()
}

// DrainTimeout is how long stopping waits for the consumer to deliver the
// buffers the session flushed when it stopped.
const DrainTimeout = 10 * time.Second

// errorCancelled is ERROR_CANCELLED: ProcessTrace's return after
// CloseTrace.
const errorCancelled = syscall.Errno(1223)

// stopAndDrain stops a session and waits, up to timeout, for its consumer
// (done receives ProcessTrace's result) to deliver what the session
// flushed, so that frees logged just before the stop still meet their
// allocations: closing the consumer at once would make them false leaks.
// Nothing in it fails the capture: a session that cannot be stopped (one
// stopped by another tool, say), a consumer that ends with an error or
// does not finish in time are told through notef, and the Matcher keeps
// what was delivered. The session's losses are added to m.
func stopAndDrain(c controller, done <-chan error, timeout time.Duration, m *Matcher, notef func(string, ...any)) {
	losses, err := c.stopSession()
	if err != nil {
		notef("stopping the ETW session: %v (was it stopped by another tool?); the profile holds what was delivered", err)
	}
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, errorCancelled) {
			notef("the ETW consumer ended with an error: %v; the profile holds what was delivered", err)
		}
		if err := c.closeConsumer(); err != nil {
			notef("closing the ETW consumer: %v", err)
		}
	case <-time.After(timeout):
		notef("the ETW consumer had not delivered the session's last buffers %s after the session stopped: "+
			"closing it; events still in its buffers are lost, and their allocations may show as leaks", timeout)
		c.closeConsumer()
		select {
		case <-done:
		case <-time.After(timeout):
			notef("the ETW consumer did not return %s after it was closed", timeout)
		}
		c.detach()
	}
	m.Lost(LostEvents, losses.Events)
	m.Lost(LostRealtimeBuffers, losses.RealtimeBuffers)
	m.Lost(LostLogBuffers, losses.LogBuffers)
}
