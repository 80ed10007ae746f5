package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kmemprof/kmemprof/bpf"
	"github.com/kmemprof/kmemprof/symbolize"
	"github.com/kmemprof/kmemprof/symbolize/host"
	"github.com/kmemprof/kmemprof/tracer"
)

// selftestChildCmd is the hidden command the selftest runs in its child.
const selftestChildCmd = "__selftest-child"

// selftestChild holds n eventfds until told to release them on stdin:
// "held N" when it holds them, "released N" once closed.
func selftestChild(args []string, stdout io.Writer) int {
	if len(args) != 1 {
		return exitUsage
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 {
		return exitUsage
	}
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil && lim.Cur < uint64(n+64) {
		lim.Cur = min(uint64(n+64), lim.Max)
		unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	}
	fds := make([]int, 0, n)
	for i := 0; i < n; i++ {
		fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
		if err != nil {
			fmt.Fprintf(os.Stderr, "eventfd %d: %v\n", i, err)
			return exitError
		}
		fds = append(fds, fd)
	}
	fmt.Fprintf(stdout, "held %d\n", n)
	in := bufio.NewScanner(os.Stdin)
	in.Scan()
	for _, fd := range fds {
		unix.Close(fd)
	}
	fmt.Fprintf(stdout, "released %d\n", n)
	in.Scan()
	return exitOK
}

// selftest runs the checks and reports whether all passed.
func selftest(o *selftestOptions, w io.Writer) bool {
	c := &checker{w: w}
	if err := checkPrivileges(); !c.check(err == nil, "privileges", "%s", errString(err, "root or CAP_BPF+CAP_PERFMON+CAP_SYSLOG")) {
		return c.done()
	}
	if err := checkKallsyms(); !c.check(err == nil, "kallsyms", "%s", errString(err, "kernel symbol addresses readable")) {
		return c.done()
	}
	start := time.Now()
	tr, err := bpf.Open(bpf.Config{Mode: o.mode, Tracking: bpf.TrackFull})
	if err != nil {
		c.check(false, "attach", "%v", err)
		return c.done()
	}
	defer tr.Close()
	c.check(true, "attach", "%s via %s in %s", strings.Join(tr.Hooks(), ","), tr.Mode(), time.Since(start).Round(time.Millisecond))
	// The kernel's counts once attached: the self-check's start.
	var startView *host.SystemView
	if v, err := host.ReadKernelCounts(); err == nil {
		startView = &v
	}

	children, err := startSelftestChildren(o.n)
	defer children.stop()
	if !c.check(err == nil, "leak", "%s", errString(err, children.String())) {
		return c.done()
	}

	syms, err := symbolize.LoadKallsyms()
	if !c.check(err == nil, "symbols", "%s", errString(err, "/proc/kallsyms loaded")) {
		return c.done()
	}
	sym := kallsymsSymbolizer{syms}

	agg, err := selftestSnapshot(tr, sym)
	if !c.check(err == nil, "snapshot", "%s", errString(err, "outstanding allocations read")) {
		return c.done()
	}
	top := heaviestStack(agg)
	through := hasFrame(top.frames, "do_eventfd")
	c.check(through, "found", "heaviest in-use stack goes through do_eventfd: %s", whereOf(top.frames))
	lo, hi := o.n-o.n/50, o.n+o.n/50
	c.check(top.objects >= uint64(lo) && top.objects <= uint64(hi), "count", "%d objects on it, want %d (+-2%%)", top.objects, o.n)

	// Every cache of the leak is named and sized: the file, dentry,
	// eventfd_ctx (kmalloc) and LSM blob objects each come from a cache.
	type cacheUse struct{ objects, space uint64 }
	byCache := map[string]*cacheUse{}
	for _, s := range agg.Samples {
		if !children.has(s.PID) || !hasFrame(s.Frames, "do_eventfd") {
			continue
		}
		u := byCache[s.Cache]
		if u == nil {
			u = &cacheUse{}
			byCache[s.Cache] = u
		}
		u.objects += s.InuseObjects
		u.space += s.InuseSpace
	}
	caches := map[string]uint64{}
	var unnamedCaches []string
	for name, u := range byCache {
		if u.objects < uint64(o.n/2) {
			continue // not one of the leak's objects per eventfd
		}
		caches[name] = u.space
		if name == "" || strings.HasPrefix(name, "[") || u.space == 0 {
			unnamedCaches = append(unnamedCaches, fmt.Sprintf("%q (%d objects, %d B)", name, u.objects, u.space))
		}
	}
	var cacheList []string
	for name, b := range caches {
		cacheList = append(cacheList, fmt.Sprintf("%s %s", name, tracer.HumanBytes(b)))
	}
	sort.Strings(cacheList)
	c.check(len(caches) >= 3 && len(unnamedCaches) == 0, "caches", "the leak's caches: %s%s", strings.Join(cacheList, ", "),
		map[bool]string{true: "; unnamed or unsized: " + strings.Join(unnamedCaches, ", "), false: ""}[len(unnamedCaches) > 0])

	// Stack quality: named frames, no tracing frames, the allocator at the leaf.
	var unnamed, tracing int
	for _, f := range top.frames {
		if f.Function == "" || strings.HasPrefix(f.Function, "[") {
			unnamed++
		}
		if strings.HasPrefix(f.Function, "bpf_") || strings.HasPrefix(f.Function, "__bpf_trace") {
			tracing++
		}
	}
	leafOK := len(top.frames) > 0 && bpf.IsAllocatorFrame(top.frames[0].Function)
	c.check(unnamed == 0 && tracing == 0 && leafOK && len(top.frames) >= 4, "stack",
		"%d frames, %d unnamed, %d tracing frames, leaf %s", len(top.frames), unnamed, tracing, leafName(top.frames))
	for _, k := range agg.Counters {
		if k.Loss && k.Value > 0 {
			c.note("losses", "%s=%d (%s)", k.Name, k.Value, k.Help)
		}
	}

	if err := children.release(); !c.check(err == nil, "release", "%s", errString(err, "the children closed their eventfds")) {
		return c.done()
	}
	// Files and dentries are freed after an RCU grace period, which takes
	// longer on a busy or emulated machine: look again until they are gone
	// or 15 s have passed.
	var left, slabs uint64
	var remaining string
	for deadline := time.Now().Add(15 * time.Second); ; {
		time.Sleep(500 * time.Millisecond)
		agg, err = selftestSnapshot(tr, sym)
		if err != nil {
			break
		}
		left, slabs, remaining = leftAfterRelease(agg, children)
		if left <= uint64(o.n/50) || time.Now().After(deadline) {
			break
		}
	}
	if !c.check(err == nil, "snapshot", "%s", errString(err, "outstanding allocations read again")) {
		return c.done()
	}
	if remaining != "" {
		remaining = " (" + remaining + ")"
	}
	c.check(left <= uint64(o.n/50), "gone", "%d of the children's do_eventfd objects still in use after release%s, want at most %d (%d slab-metadata objects the allocator keeps are not counted)", left, remaining, o.n/50, slabs)

	// The self-check once the children have exited: what other processes
	// allocated for them (a monitor listing their open files makes /proc
	// inodes and dentries, which it may do out of the tracer's sight) is
	// gone with them, and the frees of the whole leak must have been seen.
	children.stop()
	selftestSelfCheck(c, tr, startView)
	return c.done()
}

// selftestSelfCheck compares what tr tracks with the kernel's counts
// (selfCheck): a PASS when nothing contradicts them, a FAIL on any loss,
// with one NOTE line per finding.
func selftestSelfCheck(c *checker, tr *bpf.Tracer, start *host.SystemView) {
	r, err := selfCheck(tr, start)
	if err != nil {
		c.check(false, "self-check", "%v", err)
		return
	}
	var losses []string
	for _, k := range r.check.Counters() {
		if k.Value > 0 {
			losses = append(losses, fmt.Sprintf("%s=%d", k.Name, k.Value))
		}
	}
	lines := r.check.Lines()
	summary := strings.TrimPrefix(lines[len(lines)-1], "self-check: ")
	if len(losses) > 0 {
		summary = strings.Join(losses, " ") + ": " + summary
	}
	c.check(len(losses) == 0, "self-check", "%s", summary)
	for _, l := range lines[:len(lines)-1] {
		c.note("self-check", "%s", strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "!")))
	}
}

// leftAfterRelease counts the children's do_eventfd objects still in use.
// New slabs the leak made the allocator create (their metadata is allocated
// under allocate_slab, or new_slab where that is inlined) stay with the allocator after the objects are freed:
// they are counted apart, not as the leak.
func leftAfterRelease(agg *tracer.Aggregation, children selftestChildren) (left, slabs uint64, byCache string) {
	caches := map[string]uint64{}
	for _, s := range agg.Samples {
		if !children.has(s.PID) || !hasFrame(s.Frames, "do_eventfd") {
			continue
		}
		if hasFrame(s.Frames, "allocate_slab") || hasFrame(s.Frames, "new_slab") {
			slabs += s.InuseObjects
			continue
		}
		left += s.InuseObjects
		if s.InuseObjects > 0 {
			caches[s.Cache] += s.InuseObjects
		}
	}
	var parts []string
	for c, n := range caches {
		parts = append(parts, fmt.Sprintf("%s %d", c, n))
	}
	sort.Strings(parts)
	return left, slabs, strings.Join(parts, ", ")
}

func errString(err error, ok string) string {
	if err != nil {
		return err.Error()
	}
	return ok
}

func selftestSnapshot(tr *bpf.Tracer, sym tracer.Symbolizer) (*tracer.Aggregation, error) {
	snap, err := tr.Snapshot()
	if err != nil {
		return nil, err
	}
	return tracer.Aggregate(snap, sym, tracer.Options{})
}

type stackTotal struct {
	frames  []tracer.Frame
	objects uint64
	space   uint64
}

// heaviestStack sums in-use bytes by call stack, whatever the labels, and
// returns the heaviest.
func heaviestStack(agg *tracer.Aggregation) stackTotal {
	by := map[tracer.StackID]*stackTotal{}
	var top stackTotal
	for i := range agg.Samples {
		s := &agg.Samples[i]
		t := by[s.Stack]
		if t == nil {
			t = &stackTotal{frames: s.Frames}
			by[s.Stack] = t
		}
		t.objects += s.InuseObjects
		t.space += s.InuseSpace
		if t.space > top.space {
			top = *t
		}
	}
	return top
}

func hasFrame(fs []tracer.Frame, name string) bool {
	for _, f := range fs {
		if f.Function == name {
			return true
		}
	}
	return false
}

func whereOf(fs []tracer.Frame) string {
	var names []string
	for i, f := range fs {
		if i == 6 {
			names = append(names, "...")
			break
		}
		names = append(names, f.Function)
	}
	return strings.Join(names, " < ")
}

func leafName(fs []tracer.Frame) string {
	if len(fs) == 0 {
		return "(none)"
	}
	return fs[0].Function
}

type selftestProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
	n     int
}

func childPID(p *selftestProc) int {
	if p == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// selftestChildren are the leaking children: one holds them all unless
// the open-file limit is lower, then several share the leak.
type selftestChildren []*selftestProc

// startSelftestChildren starts children holding n eventfds between them,
// each at most what its open-file hard limit allows.
func startSelftestChildren(n int) (selftestChildren, error) {
	per := n
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil && lim.Max < uint64(n+64) {
		if lim.Max <= 128 {
			return nil, fmt.Errorf("the open-file hard limit (%d) is too low to hold the test's eventfds", lim.Max)
		}
		per = int(lim.Max) - 64
	}
	var cs selftestChildren
	for left := n; left > 0; left -= per {
		p, err := startSelftestChild(min(per, left))
		if err != nil {
			return cs, err
		}
		cs = append(cs, p)
	}
	return cs, nil
}

func (cs selftestChildren) String() string {
	if len(cs) == 1 {
		return fmt.Sprintf("child %d holds %d eventfds", childPID(cs[0]), cs[0].n)
	}
	n := 0
	var pids []string
	for _, p := range cs {
		n += p.n
		pids = append(pids, strconv.Itoa(childPID(p)))
	}
	return fmt.Sprintf("children %s hold %d eventfds (the open-file limit is low)", strings.Join(pids, ","), n)
}

func (cs selftestChildren) has(pid uint32) bool {
	for _, p := range cs {
		if uint32(childPID(p)) == pid {
			return true
		}
	}
	return false
}

func (cs selftestChildren) release() error {
	for _, p := range cs {
		if err := p.release(); err != nil {
			return err
		}
	}
	return nil
}

func (cs selftestChildren) stop() {
	for _, p := range cs {
		p.stop()
	}
}

func startSelftestChild(n int) (*selftestProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding kmemprof's executable: %w", err)
	}
	cmd := exec.Command(exe, selftestChildCmd, strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the leaking child: %w", err)
	}
	p := &selftestProc{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout), n: n}
	if err := p.expect(fmt.Sprintf("held %d", n)); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

func (p *selftestProc) expect(want string) error {
	done := make(chan bool, 1)
	go func() { done <- p.out.Scan() }()
	select {
	case ok := <-done:
		if !ok {
			return fmt.Errorf("the leaking child exited before %q", want)
		}
	case <-time.After(30 * time.Second):
		return fmt.Errorf("the leaking child did not say %q within 30 s", want)
	}
	if got := strings.TrimSpace(p.out.Text()); got != want {
		return fmt.Errorf("the leaking child said %q, want %q", got, want)
	}
	return nil
}

func (p *selftestProc) release() error {
	if _, err := io.WriteString(p.stdin, "release\n"); err != nil {
		return fmt.Errorf("telling the child to release: %w", err)
	}
	return p.expect(fmt.Sprintf("released %d", p.n))
}

func (p *selftestProc) stop() {
	p.stdin.Close()
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
}
