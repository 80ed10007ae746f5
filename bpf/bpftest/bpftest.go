// Package bpftest holds helpers for kmemprof's tests that need the real
// kernel: the privileged-test gate and a child process that makes a known
// kernel allocation leak (eventfds it holds until told to release them).
package bpftest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// RequireEnv is the environment variable under which a privileged test that
// would skip fails instead. CI sets it.
const RequireEnv = "KMEMPROF_REQUIRE_BPF"

// Require skips the test when it cannot load BPF programs (not root), or
// fails it when RequireEnv=1: in CI a skipped kernel test is a failure.
//
// It also holds, until the test ends, the lock that runs one kernel test at
// a time across the test binaries of packages that `go test` runs in
// parallel: kernel tests trace the whole machine, and one package's leaks
// and churn would otherwise show in another's captures. Tests that need no
// kernel run alongside.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		lockKernel(t)
		return
	}
	msg := "needs root to load BPF programs"
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%s, and %s=1 forbids skipping", msg, RequireEnv)
	}
	t.Skip(msg)
}

const helperEnv = "KMEMPROF_TEST_HELPER"

// HelperMain runs the helper child when the test binary was started as one,
// and exits; otherwise it returns at once. Call it first thing in TestMain.
func HelperMain() {
	switch os.Getenv(helperEnv) {
	case "":
		return
	case "steady":
		n, _ := strconv.Atoi(os.Getenv(helperEnv + "_N"))
		d, _ := time.ParseDuration(os.Getenv(helperEnv + "_D"))
		if err := steadyLeaker(n, d, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	case "pipes":
		n, _ := strconv.Atoi(os.Getenv(helperEnv + "_N"))
		if err := pipeFiller(n, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	case "mmap":
		n, _ := strconv.Atoi(os.Getenv(helperEnv + "_N"))
		if err := mmapChurn(n, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	case "hold":
		n, _ := strconv.Atoi(os.Getenv(helperEnv + "_N"))
		if err := holdEventfds(n, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	case "openclose":
		n, _ := strconv.Atoi(os.Getenv(helperEnv + "_N"))
		ns, err := openCloseLoop(n)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("ns/iter %f\n", ns)
		os.Exit(0)
	case "tree":
		n, _ := strconv.Atoi(os.Getenv(helperEnv + "_N"))
		if err := treeWalker(os.Getenv(helperEnv+"_DIR"), n, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	case "storm":
		n, _ := strconv.Atoi(os.Getenv(helperEnv + "_N"))
		d, _ := time.ParseDuration(os.Getenv(helperEnv + "_D"))
		if err := fileStorm(os.Getenv(helperEnv+"_DIR"), n, d, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	case "anon":
		if err := anonChurn(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	case "objects":
		n, _ := strconv.Atoi(os.Getenv(helperEnv + "_N"))
		if err := objectsMaker(n, os.Getenv(helperEnv+"_DIR"), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	case "inflight":
		n, _ := strconv.Atoi(os.Getenv(helperEnv + "_N"))
		if err := inflightLeaker(n, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	case "eventfd":
		n, err := strconv.Atoi(os.Getenv(helperEnv + "_N"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "bad helper count:", err)
			os.Exit(2)
		}
		if err := eventfdLeaker(n, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	default:
		fmt.Fprintln(os.Stderr, "unknown helper", os.Getenv(helperEnv))
		os.Exit(2)
	}
}

// Leaker is a child process that holds N eventfds: each one is a set of
// kernel allocations (file, dentry, eventfd_ctx, LSM blob) made through
// do_eventfd and kept until Release.
type Leaker struct {
	*Child
	N int
}

// StartLeaker starts a child of the test binary that opens n eventfds, and
// waits until it holds them. The test binary's TestMain must call HelperMain.
func StartLeaker(t testing.TB, n int) *Leaker {
	t.Helper()
	l := StartIdleLeaker(t, n, "")
	l.Leak(t)
	return l
}

// StartIdleLeaker starts the leaker child but does not let it leak yet, so
// that a test can set up a filter on its pid first; call Leak. A non-empty
// cgroupDir (a cgroup v2 directory) starts the child inside that cgroup.
func StartIdleLeaker(t testing.TB, n int, cgroupDir string) *Leaker {
	t.Helper()
	l := &Leaker{Child: startChildIn(t, cgroupDir, helperEnv+"=eventfd", helperEnv+"_N="+strconv.Itoa(n)), N: n}
	l.expect(t, "ready")
	return l
}

// Leak makes the child open its eventfds and waits until it holds them.
func (l *Leaker) Leak(t testing.TB) {
	t.Helper()
	if _, err := io.WriteString(l.stdin, "leak\n"); err != nil {
		t.Fatalf("telling leaker to leak: %v", err)
	}
	l.expect(t, fmt.Sprintf("held %d", l.N))
}

// Release makes the child close every eventfd and waits until it has.
func (l *Leaker) Release(t testing.TB) {
	t.Helper()
	if _, err := io.WriteString(l.stdin, "release\n"); err != nil {
		t.Fatalf("telling leaker to release: %v", err)
	}
	l.expect(t, fmt.Sprintf("released %d", l.N))
}

func (l *Leaker) expect(t testing.TB, want string) {
	t.Helper()
	if !l.out.Scan() {
		t.Fatalf("leaker exited before %q: %v", want, l.out.Err())
	}
	if got := strings.TrimSpace(l.out.Text()); got != want {
		t.Fatalf("leaker said %q, want %q", got, want)
	}
}

// maxPerLeaker keeps each child under common RLIMIT_NOFILE hard limits,
// which an unprivileged-for-resources root (no CAP_SYS_RESOURCE) cannot raise.
const maxPerLeaker = 16000

// StartLeakers makes n eventfds held across as many children as needed.
func StartLeakers(t testing.TB, n int) []*Leaker {
	t.Helper()
	var ls []*Leaker
	for n > 0 {
		k := min(n, maxPerLeaker)
		ls = append(ls, StartLeaker(t, k))
		n -= k
	}
	return ls
}

// Child is a helper child process of a test: a steady leaker or a tree walker.
type Child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
	PID   int
}

func startChild(t testing.TB, env ...string) *Child {
	t.Helper()
	return startChildIn(t, "", env...)
}

// StartMmapChurn starts a child that maps and unmaps n times a few
// interleaved regions, so that the maple tree that indexes its address space
// allocates and frees nodes, which the kernel frees in bulk
// (kmem_cache_free_bulk: no tracepoint); call Walk to run it.
func StartMmapChurn(t testing.TB, n int) *Child {
	t.Helper()
	return startChild(t, helperEnv+"=mmap", helperEnv+"_N="+strconv.Itoa(n))
}

// Stdin returns the child's standard input (closing it ends the helpers).
func (c *Child) Stdin() io.WriteCloser { return c.stdin }

// startChildIn starts a helper child, inside the cgroup v2 directory
// cgroupDir when it is not empty.
func startChildIn(t testing.TB, cgroupDir string, env ...string) *Child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	if cgroupDir != "" {
		f, err := os.Open(cgroupDir)
		if err != nil {
			t.Fatalf("opening cgroup: %v", err)
		}
		defer f.Close()
		setCgroup(cmd, f)
	}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting helper: %v", err)
	}
	c := &Child{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout), PID: cmd.Process.Pid}
	t.Cleanup(func() {
		c.stdin.Close()
		done := make(chan struct{})
		go func() { c.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			c.cmd.Process.Kill()
			<-done
		}
	})
	return c
}

// Walk tells a tree walker to start walking.
func (c *Child) Walk(t testing.TB) {
	t.Helper()
	if _, err := io.WriteString(c.stdin, "walk\n"); err != nil {
		t.Fatalf("telling the walker to walk: %v", err)
	}
}

// Wait waits until the child prints a line starting with prefix.
func (c *Child) Wait(t testing.TB, prefix string) string {
	t.Helper()
	for c.out.Scan() {
		if strings.HasPrefix(c.out.Text(), prefix) {
			return c.out.Text()
		}
	}
	t.Fatalf("helper exited before %q", prefix)
	return ""
}

// StartSteadyLeaker starts a child that opens n eventfds evenly over d and
// holds them; it prints "held N" when done.
func StartSteadyLeaker(t testing.TB, n int, d time.Duration) *Child {
	t.Helper()
	return startChild(t, helperEnv+"=steady", helperEnv+"_N="+strconv.Itoa(n), helperEnv+"_D="+d.String())
}

// HoldEnv is the environment that makes the test binary (os.Args[0], run
// with -test.run=^$) open n eventfds, print "held N PID" and keep them until
// SIGTERM or SIGINT (at most 5 minutes): a leaker that a shell can start in
// the background, for tests of commands run under kmemprof.
func HoldEnv(n int) []string {
	return []string{helperEnv + "=hold", helperEnv + "_N=" + strconv.Itoa(n)}
}

// OpenClose runs a child that opens and closes /dev/null n times (after a
// tenth of that to warm up) and returns the time per iteration it measured.
// A child, so that its allocations are not the tracer's own (which the
// tracer skips).
func OpenClose(t testing.TB, n int) float64 {
	t.Helper()
	c := startChild(t, helperEnv+"=openclose", helperEnv+"_N="+strconv.Itoa(n))
	line := c.Wait(t, "ns/iter ")
	ns, err := strconv.ParseFloat(strings.TrimPrefix(line, "ns/iter "), 64)
	if err != nil {
		t.Fatalf("helper printed %q: %v", line, err)
	}
	return ns
}

// StartTreeWalker starts a child that makes n files under dir and prints
// "made N"; after Walk it walks the tree, then again every second (stat of every
// entry: with the caches dropped, that fills the dentry and inode caches)
// until stdin closes.
func StartTreeWalker(t testing.TB, dir string, n int) *Child {
	t.Helper()
	return startChild(t, helperEnv+"=tree", helperEnv+"_N="+strconv.Itoa(n), helperEnv+"_DIR="+dir)
}

// StartPipeFiller starts a child that makes n pipes and writes one page into
// each without reading it (a page allocation held per pipe, through
// pipe_write); it prints "filled N".
func StartPipeFiller(t testing.TB, n int) *Child {
	t.Helper()
	return startChild(t, helperEnv+"=pipes", helperEnv+"_N="+strconv.Itoa(n))
}

// StartFileStorm starts a child that makes n files in dir evenly over d,
// opening each for writing and stat'ing it; it prints "made N" when done
// and holds nothing else until stdin closes.
func StartFileStorm(t testing.TB, dir string, n int, d time.Duration) *Child {
	t.Helper()
	return startChild(t, helperEnv+"=storm", helperEnv+"_N="+strconv.Itoa(n), helperEnv+"_D="+d.String(), helperEnv+"_DIR="+dir)
}

// StartAnonChurn starts a child that maps, touches and unmaps anonymous
// memory until stdin closes (page allocations and frees, thousands a
// second); it waits until the churn has begun.
func StartAnonChurn(t testing.TB) *Child {
	t.Helper()
	c := startChild(t, helperEnv+"=anon")
	c.Wait(t, "churning")
	return c
}

// Objects is a child that makes several kinds of kernel objects and holds
// them until Release: N files in a tmpfs directory (shmem_inode_cache and
// dentry objects, allocated with kmem_cache_alloc_lru), N timerfds (a
// kmalloc'd timerfd_ctx, a file and a dentry each) and N/4 pipes with a
// page written into each (a page allocation, and a kmalloc'd
// pipe_inode_info).
type Objects struct {
	*Child
	N int
}

// StartObjects starts an Objects child that will make its objects in dir
// (a tmpfs directory); it waits until the child is ready. Call Make.
func StartObjects(t testing.TB, n int, dir string) *Objects {
	t.Helper()
	o := &Objects{Child: startChild(t, helperEnv+"=objects", helperEnv+"_N="+strconv.Itoa(n), helperEnv+"_DIR="+dir), N: n}
	o.Wait(t, "ready")
	return o
}

// Make makes the child make its objects and waits until it holds them.
func (o *Objects) Make(t testing.TB) {
	t.Helper()
	if _, err := io.WriteString(o.stdin, "make\n"); err != nil {
		t.Fatalf("telling the child to make its objects: %v", err)
	}
	o.Wait(t, fmt.Sprintf("made %d", o.N))
}

// Release makes the child close and remove every object and waits until it has.
func (o *Objects) Release(t testing.TB) {
	t.Helper()
	if _, err := io.WriteString(o.stdin, "release\n"); err != nil {
		t.Fatalf("telling the child to release its objects: %v", err)
	}
	o.Wait(t, fmt.Sprintf("released %d", o.N))
}

// Cgroup makes a cgroup v2 directory under mnt (the cgroup2 mount) for one
// test and removes it after; with no mount it skips, or fails under
// RequireEnv.
func Cgroup(t testing.TB, mnt string) (abs, rel string) {
	t.Helper()
	if mnt == "" {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatal("cgroup2 is not mounted")
		}
		t.Skip("cgroup2 is not mounted")
	}
	rel = "/kmemprof-test-" + strconv.Itoa(os.Getpid()) + "-" + strings.ReplaceAll(t.Name(), "/", "_")
	abs = mnt + rel
	if err := os.Mkdir(abs, 0o755); err != nil {
		t.Fatalf("making a test cgroup: %v", err)
	}
	t.Cleanup(func() {
		// The child has exited by now (its cleanup ran first); retry while the
		// kernel finishes tearing it down.
		for i := 0; i < 50; i++ {
			if err := os.Remove(abs); err == nil || os.IsNotExist(err) {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("test cgroup %s not removed", abs)
	})
	return abs, rel
}

// kernelLock is the file whose lock runs one kernel test at a time across
// test binaries.
var kernelLock = filepath.Join(os.TempDir(), "kmemprof-kernel-tests.lock")

// held counts this process's holders of the kernel lock: a subtest that
// calls Require inside its parent's hold does not wait for itself.
var held struct {
	sync.Mutex
	n int
	f *os.File
}

func lockKernel(t testing.TB) {
	t.Helper()
	held.Lock()
	defer held.Unlock()
	if held.n == 0 {
		f, err := lockFile(kernelLock)
		if err != nil {
			t.Fatalf("taking the kernel tests' lock: %v", err)
		}
		held.f = f
	}
	held.n++
	t.Cleanup(func() {
		held.Lock()
		defer held.Unlock()
		if held.n--; held.n == 0 {
			held.f.Close()
			held.f = nil
		}
	})
}
