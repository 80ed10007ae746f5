package bpftest

import (
	"strconv"
	"testing"
)

// StartHiddenLeaker is StartLeaker whose child keeps its n eventfds in
// flight in a unix socket instead of in its descriptor table: the same
// kernel objects, made through do_eventfd, but /proc/PID/fd lists two
// sockets. A process that lists other processes' open files (a monitoring
// agent) would otherwise make a /proc inode and dentry for each of them,
// allocations a test does not expect, which the tracer may not see. Release
// frees them.
func StartHiddenLeaker(t testing.TB, n int) *Leaker {
	t.Helper()
	l := &Leaker{Child: startChild(t, helperEnv+"=inflight", helperEnv+"_N="+strconv.Itoa(n)), N: n}
	l.expect(t, "ready")
	l.Leak(t)
	return l
}
