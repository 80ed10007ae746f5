package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/google/pprof/profile"
	"golang.org/x/sys/unix"

	"github.com/kmemprof/kmemprof/bpf"
	"github.com/kmemprof/kmemprof/bpf/bpftest"
	"github.com/kmemprof/kmemprof/symbolize/host"
	"github.com/kmemprof/kmemprof/tracer"
)

// recorder is a `kmemprof record` process started by a test.
type recorder struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr *lockedBuffer
	lines  chan string
	out    string
	progs  map[uint32]bool // BPF program ids the process held while tracing
}

type lockedBuffer struct {
	ch  chan struct{}
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.ch <- struct{}{}
	defer func() { <-b.ch }()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.ch <- struct{}{}
	defer func() { <-b.ch }()
	return b.buf.String()
}

// kmemprofCmd returns a command that runs kmemprof's main in the test binary.
func kmemprofCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	return cmd
}

// startRecord starts `kmemprof record args...` writing to a temp file, and
// waits until it prints its "tracing" line.
func startRecord(t testing.TB, args ...string) *recorder {
	t.Helper()
	r, err := startRecordWait(t, 30*time.Second, args...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// startRecordWait is startRecord waiting up to wait for the tracing line
// (attaching kprobes under emulation takes long); it returns an error
// holding kmemprof's stderr when kmemprof exits before tracing.
func startRecordWait(t testing.TB, wait time.Duration, args ...string) (*recorder, error) {
	t.Helper()
	r := &recorder{out: filepath.Join(t.TempDir(), "kmem.pb.gz"), lines: make(chan string, 100),
		stderr: &lockedBuffer{ch: make(chan struct{}, 1)}}
	r.cmd = kmemprofCmd(append([]string{"record", "-o", r.out}, args...)...)
	r.cmd.Stdout = &r.stdout
	pipe, err := r.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if r.cmd.ProcessState == nil {
			r.cmd.Process.Kill()
			r.cmd.Wait()
		}
	})
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			r.stderr.ch <- struct{}{}
			r.stderr.buf.WriteString(sc.Text() + "\n")
			<-r.stderr.ch
			select {
			case r.lines <- sc.Text():
			default:
			}
		}
		close(r.lines)
	}()
	deadline := time.After(wait)
	for {
		select {
		case line, ok := <-r.lines:
			if !ok {
				r.cmd.Wait()
				return nil, fmt.Errorf("kmemprof exited before tracing: %s", r.stderr.String())
			}
			if strings.HasPrefix(line, "tracing ") {
				r.progs = progIDs(t, r.cmd.Process.Pid)
				return r, nil
			}
		case <-deadline:
			return nil, fmt.Errorf("no tracing line after %v: %s", wait, r.stderr.String())
		}
	}
}

// progIDs returns the ids of the BPF programs process pid holds fds of.
func progIDs(t testing.TB, pid int) map[uint32]bool {
	t.Helper()
	ids := map[uint32]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fdinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "prog_id:"); ok {
				if id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32); err == nil {
					ids[uint32(id)] = true
				}
			}
		}
	}
	if len(ids) == 0 {
		t.Fatalf("process %d holds no BPF program while tracing", pid)
	}
	return ids
}

// stop sends sig and waits for the process to exit with status 0.
func (r *recorder) stop(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := r.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	r.wait(t)
}

func (r *recorder) wait(t testing.TB) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- r.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("kmemprof record: %v\nstderr:\n%s", err, r.stderr.String())
		}
	case <-time.After(60 * time.Second):
		r.cmd.Process.Kill()
		t.Fatalf("kmemprof record did not exit: %s", r.stderr.String())
	}
}

// checkProgramsGone fails if any BPF program the recorder held is still loaded.
func (r *recorder) checkProgramsGone(t *testing.T) {
	t.Helper()
	for id := range r.progs {
		deadline := time.Now().Add(5 * time.Second) // freed after an RCU grace period
		for {
			p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
			if err != nil {
				break
			}
			p.Close()
			if time.Now().After(deadline) {
				t.Errorf("BPF program %d still loaded after kmemprof exited", id)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// readProfile checks the file mode and parses the profile.
func readProfile(t *testing.T, path string) *profile.Profile {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatalf("profile not written: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("profile mode %v, want 0600", st.Mode().Perm())
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp*"))
	if len(left) > 0 {
		t.Errorf("temp files left: %v", left)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		t.Fatalf("parsing profile: %v", err)
	}
	if err := p.CheckValid(); err != nil {
		t.Fatalf("invalid profile: %v", err)
	}
	return p
}

func sampleIndex(t *testing.T, p *profile.Profile, typ string) int {
	t.Helper()
	for i, st := range p.SampleType {
		if st.Type == typ {
			return i
		}
	}
	t.Fatalf("no sample type %s in %v", typ, p.SampleType)
	return -1
}

func funcs(s *profile.Sample) []string {
	var out []string
	for _, l := range s.Location {
		for _, ln := range l.Line {
			out = append(out, ln.Function.Name)
		}
	}
	return out
}

type stackSum struct {
	frames        []string
	space, object int64
}

// stacksBy sums in-use values by call stack (whatever the labels).
func stacksBy(t *testing.T, p *profile.Profile) []stackSum {
	space, objects := sampleIndex(t, p, "inuse_space"), sampleIndex(t, p, "inuse_objects")
	byKey := map[string]*stackSum{}
	var order []string
	for _, s := range p.Sample {
		var ids []string
		for _, l := range s.Location {
			ids = append(ids, strconv.FormatUint(l.ID, 10))
		}
		k := strings.Join(ids, ",")
		if byKey[k] == nil {
			byKey[k] = &stackSum{frames: funcs(s)}
			order = append(order, k)
		}
		byKey[k].space += s.Value[space]
		byKey[k].object += s.Value[objects]
	}
	out := make([]stackSum, 0, len(order))
	for _, k := range order {
		out = append(out, *byKey[k])
	}
	return out
}

func has(frames []string, fn string) bool {
	for _, f := range frames {
		if f == fn {
			return true
		}
	}
	return false
}

const leakN = 10000

// TestRecordEventfdLeak is the end-to-end acceptance test: a capture during
// which a child makes and holds 10,000 eventfds, stopped by SIGINT.
func TestRecordEventfdLeak(t *testing.T) {
	bpftest.Require(t)
	r := startRecord(t, "-d", "5m")
	l := bpftest.StartLeaker(t, leakN)
	r.stop(t, syscall.SIGINT)
	r.checkProgramsGone(t)
	p := readProfile(t, r.out)

	stacks := stacksBy(t, p)
	var top stackSum
	for _, s := range stacks {
		if s.space > top.space {
			top = s
		}
	}
	if !has(top.frames, "do_eventfd") {
		t.Errorf("heaviest in-use stack does not go through do_eventfd: %v", top.frames)
	}
	if d := top.object - leakN; d < -leakN/50 || d > leakN/50 {
		t.Errorf("heaviest stack holds %d objects, want %d +-2%%", top.object, leakN)
	}
	for _, loc := range p.Location {
		for _, ln := range loc.Line {
			if ln.Function.Name == "" || strings.HasPrefix(ln.Function.Name, "[unknown") {
				t.Errorf("kernel frame %#x has no function name (%q)", loc.Address, ln.Function.Name)
			}
			if strings.HasPrefix(ln.Function.Name, "bpf_prog_") || strings.HasPrefix(ln.Function.Name, "bpf_trace_run") {
				t.Errorf("tracing frame %s left in a stack", ln.Function.Name)
			}
		}
	}
	// Labels: the leak's samples carry the child's pid and comm.
	var labelled bool
	for _, s := range p.Sample {
		if has(funcs(s), "do_eventfd") && len(s.Label["pid"]) == 1 && s.Label["pid"][0] == strconv.Itoa(l.PID) {
			labelled = s.Label["kind"][0] == "slab" && len(s.Label["cache"]) == 1 && len(s.Label["comm"]) == 1
		}
	}
	if !labelled {
		t.Errorf("no do_eventfd sample labelled with the leaker's pid %d, kind, cache and comm", l.PID)
	}
	if !strings.Contains(r.stdout.String(), "do_eventfd") {
		t.Errorf("terminal summary does not show do_eventfd:\n%s", r.stdout.String())
	}
	stderr := r.stderr.String()
	for _, w := range []string{"via raw_tp", "interrupted", "go tool pprof"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr does not mention %q:\n%s", w, stderr)
		}
	}

	// go tool pprof reads it.
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Logf("go not on PATH: go tool pprof checks not run")
		return
	}
	for _, args := range [][]string{
		{"-top"},
		{"-sample_index=inuse_objects", "-top"},
		{"-tagfocus=cache=filp", "-top"},
		{"-raw"},
		{"-traces"},
	} {
		cmd := exec.Command(goTool, append(append([]string{"tool", "pprof"}, args...), r.out)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("go tool pprof %v: %v\n%s", args, err, out)
			continue
		}
		if !bytes.Contains(out, []byte("do_eventfd")) && !bytes.Contains(out, []byte("alloc_empty_file")) {
			t.Errorf("go tool pprof %v does not show the leak:\n%s", args, out)
		}
	}
}

// TestRecordReleasedLeak: allocations freed before the end are not in use,
// and SIGTERM ends the capture like SIGINT. --mode full keeps allocation
// totals, so alloc_objects still counts them.
func TestRecordReleasedLeak(t *testing.T) {
	bpftest.Require(t)
	r := startRecord(t, "-d", "5m", "--mode", "full")
	l := bpftest.StartLeaker(t, leakN)
	l.Release(t)
	time.Sleep(time.Second) // dentries are freed after an RCU grace period
	r.stop(t, syscall.SIGTERM)
	r.checkProgramsGone(t)
	p := readProfile(t, r.out)
	alloc := sampleIndex(t, p, "alloc_objects")
	inuseIdx := sampleIndex(t, p, "inuse_objects")
	// Only the child's: other tests may make eventfds meanwhile.
	var allocated, inuse int64
	for _, s := range p.Sample {
		if !has(funcs(s), "do_eventfd") || len(s.Label["pid"]) != 1 || s.Label["pid"][0] != strconv.Itoa(l.PID) {
			continue
		}
		allocated += s.Value[alloc]
		inuse += s.Value[inuseIdx]
	}
	if inuse > leakN/50 {
		t.Errorf("%d do_eventfd objects still in use after the child closed them", inuse)
	}
	if allocated < 3*leakN {
		t.Errorf("alloc_objects through do_eventfd %d, want >= %d", allocated, 3*leakN)
	}
	// Every sample allocated at least what it still holds.
	allocSpace, inuseSpace := sampleIndex(t, p, "alloc_space"), sampleIndex(t, p, "inuse_space")
	for _, s := range p.Sample {
		if s.Value[allocSpace] < s.Value[inuseSpace] || s.Value[alloc] < s.Value[sampleIndex(t, p, "inuse_objects")] {
			t.Errorf("sample %v allocated %d bytes in %d objects but holds %d bytes", funcs(s), s.Value[allocSpace], s.Value[alloc], s.Value[inuseSpace])
			break
		}
	}
}

// TestRecordDuration: a capture that runs to its duration exits 0 and prints
// the summary with its loss counters.
func TestRecordDuration(t *testing.T) {
	bpftest.Require(t)
	r := startRecord(t, "-d", "1s", "--kinds", "slab,page,percpu")
	r.wait(t)
	r.checkProgramsGone(t)
	p := readProfile(t, r.out)
	comments := strings.Join(p.Comments, "\n")
	for _, w := range []string{"stack_lost_collision", "outstanding_map_full", "free_untracked_slab", "attach raw_tp", "percpu:percpu_alloc_percpu"} {
		if !strings.Contains(comments, w) {
			t.Errorf("profile comments do not mention %q", w)
		}
	}
	if !strings.Contains(r.stdout.String(), "stack_lost_collision") {
		t.Errorf("summary does not list the loss counters:\n%s", r.stdout.String())
	}
}

func TestRecordForcedKprobeFails(t *testing.T) {
	bpftest.Require(t)
	if _, err := os.Stat("/sys/bus/event_source/devices/kprobe"); err == nil {
		t.Skip("this kernel has kprobes")
	}
	out := filepath.Join(t.TempDir(), "k.pb.gz")
	cmd := kmemprofCmd("record", "--attach", "kprobe", "-d", "1s", "-o", out)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitError {
		t.Fatalf("want exit %d, got %v; stderr %s", exitError, err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "CONFIG_KPROBES") {
		t.Errorf("error does not name the missing kernel support: %s", stderr.String())
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("output written despite the failure")
	}
}

// TestRecordNotRoot runs kmemprof as an unprivileged user.
func TestRecordNotRoot(t *testing.T) {
	bpftest.Require(t)
	// t.TempDir's parent is 0700: make a directory nobody can reach.
	dir, err := os.MkdirTemp("", "kmemprof-notroot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The test binary may sit in a directory nobody cannot reach: copy it.
	bin := filepath.Join(dir, "kmemprof.test")
	if err := copyFile(exe, bin); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "k.pb.gz")
	cmd := exec.Command(bin, "record", "-d", "1s", "-o", out)
	cmd.Env = []string{mainEnv + "=1", "PATH=/usr/bin:/bin"}
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitError {
		t.Fatalf("want exit %d, got %v; stderr %s", exitError, err, stderr.String())
	}
	for _, w := range []string{"needs root", "CAP_BPF", "CAP_PERFMON"} {
		if !strings.Contains(stderr.String(), w) {
			t.Errorf("error does not say %q: %s", w, stderr.String())
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("output written by an unprivileged run")
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func TestSelftest(t *testing.T) {
	bpftest.Require(t)
	cmd := kmemprofCmd("selftest", "-n", "2000")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("selftest failed: %v\n%s", err, out)
	}
	for _, w := range []string{"PASS  attach", "PASS  found", "PASS  count", "PASS  stack", "PASS  gone", "PASS  self-check", "selftest PASS"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("selftest output lacks %q:\n%s", w, out)
		}
	}
	// The leak's 2000 objects (+-2%, as the selftest allows), and perhaps a
	// few of other processes: the stack is every anonymous file's (Go
	// programs open eventfds and epoll files as they start).
	m := regexp.MustCompile(`PASS  count\s+(\d+) objects`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("no count line:\n%s", out)
	}
	if n, _ := strconv.Atoi(m[1]); n < 2000-40 || n > 2000+20 {
		t.Errorf("selftest counted %d objects on the leak's stack, want its 2000 (and at most a few more):\n%s", n, out)
	}
}

func TestSelftestForcedKprobe(t *testing.T) {
	bpftest.Require(t)
	if _, err := os.Stat("/sys/bus/event_source/devices/kprobe"); err == nil {
		t.Skip("this kernel has kprobes")
	}
	out, err := kmemprofCmd("selftest", "--attach", "kprobe").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitError {
		t.Fatalf("want exit %d, got %v:\n%s", exitError, err, out)
	}
	for _, w := range []string{"FAIL  attach", "no kprobe support", "CONFIG_KPROBES", "selftest FAIL: attach"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

// TestRecordGrowthRanksTheLeak: during the capture one child walks a tree of
// 50,000 files it made (dentry and inode caches fill, then plateau)
// while another leaks 5,000 eventfds steadily: with --interval, the leak is
// the top-ranked growing stack and the cache stacks are labelled reclaimable.
func TestRecordGrowthRanksTheLeak(t *testing.T) {
	bpftest.Require(t)
	// The tree is made first and the caches dropped, so that walking it
	// during the capture fills the dentry and inode caches.
	walker := bpftest.StartTreeWalker(t, t.TempDir(), 50000)
	walker.Wait(t, "made")
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0); err != nil {
		t.Fatalf("dropping the dentry and inode caches: %v", err)
	}
	// The capture ends by Ctrl-C once the leak is whole, not after a fixed
	// time: under emulation (the kernel matrix) the walk and the leak take
	// longer than any fixed duration a fast machine would pick.
	r := startRecord(t, "-d", "10m", "--interval", "500ms")
	walker.Walk(t)
	leaker := bpftest.StartSteadyLeaker(t, 5000, 6*time.Second)
	leaker.Wait(t, "held")
	time.Sleep(time.Second) // two more intervals with the leak held
	r.stop(t, syscall.SIGINT)
	p := readProfile(t, r.out)

	growth := sampleIndex(t, p, "growth_space")
	inuse := sampleIndex(t, p, "inuse_objects")
	leakerPID := strconv.Itoa(leaker.PID)
	// Rank stacks by growth as the summary does: unreclaimable first. The
	// leak's call sites are shared with the walker's churn (every file open
	// allocates its filp at the same place), so the adaptive mode may keep
	// part of the leak under call-site stacks: a stack is the leak's when
	// most of what it holds is the leaker's.
	type row struct {
		frames      []string
		growth      int64
		objects     int64
		leakObjects int64
		reclaimable bool
	}
	byStack := map[string]*row{}
	var walkerReclaimable, walkerDentries bool
	var leakFiles int64
	for _, s := range p.Sample {
		var ids []string
		for _, l := range s.Location {
			ids = append(ids, strconv.FormatUint(l.ID, 10))
		}
		k := strings.Join(ids, ",")
		if byStack[k] == nil {
			byStack[k] = &row{frames: funcs(s)}
		}
		byStack[k].growth += s.Value[growth]
		byStack[k].objects += s.Value[inuse]
		recl := len(s.Label["reclaimable"]) == 1 && s.Label["reclaimable"][0] == "true"
		byStack[k].reclaimable = byStack[k].reclaimable || recl
		pid := strings.Join(s.Label["pid"], ",")
		cache := strings.Join(s.Label["cache"], ",")
		if pid == leakerPID {
			byStack[k].leakObjects += s.Value[inuse]
			if cache == "filp" {
				leakFiles += s.Value[inuse]
			}
		}
		if pid == strconv.Itoa(walker.PID) && cache == "dentry" {
			walkerDentries = true
			walkerReclaimable = walkerReclaimable || recl
		}
	}
	// Every eventfd the leaker holds is one file, whatever its stack. This
	// test is about ranking, not exact accounting (TestRecordEventfdLeak and
	// the selftest count exactly): it allows the allocations counted as
	// missed, and a few more (2 of 5000 were once missing on 7.2 under
	// emulation, with both cores busy).
	missed := commentCounter(p, "prog_recursion_misses") + commentCounter(p, "outstanding_map_full")
	if leakFiles+missed < 5000-5 || leakFiles > 5000+16 {
		t.Errorf("the leaker holds %d files in the profile (%d allocations counted as missed), want its 5000 eventfds", leakFiles, missed)
	}
	if leakFiles < 5000 {
		t.Logf("the leaker holds %d of its 5000 files in the profile; counters: %q", leakFiles, p.Comments)
	}
	var top *row
	for _, rw := range byStack {
		if rw.reclaimable {
			continue
		}
		if top == nil || rw.growth > top.growth {
			top = rw
		}
	}
	if top == nil || 2*top.leakObjects < top.objects {
		t.Errorf("top unreclaimable growing stack is not the leak's: %+v", top)
	} else if !has(top.frames, "do_eventfd") {
		t.Logf("top unreclaimable growing stack (the leak's, under its call site): %v", top.frames)
	}
	if !walkerDentries || !walkerReclaimable {
		t.Errorf("the tree walker's dentries: present %v, labelled reclaimable %v", walkerDentries, walkerReclaimable)
	}
	// The terminal summary ranks the same way: its top row is one of the
	// leak's caches, not a reclaimable one.
	lines := strings.Split(r.stdout.String(), "\n")
	if len(lines) < 2 || !strings.Contains(lines[0], "GROWTH") {
		t.Fatalf("summary has no growth column:\n%s", r.stdout.String())
	}
	if !strings.Contains(lines[1], " filp") && !strings.Contains(lines[1], " kmalloc-") && !strings.Contains(lines[1], "eventfd") {
		t.Errorf("summary's top row is not the eventfd leak's:\n%s", r.stdout.String())
	}
	if n := summaryObjects(t, lines[0], lines[1]); n < 1000 {
		t.Errorf("summary's top row holds %d objects, want most of the 5000 of the eventfd leak:\n%s", n, r.stdout.String())
	}
	if strings.Contains(lines[1], "(reclaimable)") {
		t.Errorf("summary's top row is a reclaimable cache:\n%s", r.stdout.String())
	}
}

// commentCounter returns the value of counter name in the profile's
// comments ("name=value"), or 0.
func commentCounter(p *profile.Profile, name string) int64 {
	for _, c := range p.Comments {
		for _, f := range strings.Fields(c) {
			if v, ok := strings.CutPrefix(f, name+"="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
		}
	}
	return 0
}

// summaryObjects reads the OBJECTS cell of a summary row: the number that
// ends where the header's OBJECTS ends (the columns are right-aligned).
func summaryObjects(t *testing.T, header, row string) int {
	t.Helper()
	end := strings.Index(header, "OBJECTS") + len("OBJECTS")
	if end < len("OBJECTS") || len(row) < end {
		t.Fatalf("no OBJECTS column in %q / %q", header, row)
	}
	cell := row[:end]
	if i := strings.LastIndexByte(cell, ' '); i >= 0 {
		cell = cell[i+1:]
	}
	n, err := strconv.Atoi(cell)
	if err != nil {
		t.Fatalf("OBJECTS cell %q of %q: %v", cell, row, err)
	}
	return n
}

// TestRecordHTTP: with --http, the finished profile is served in the pprof
// web UI on loopback until Ctrl-C.
func TestRecordHTTP(t *testing.T) {
	bpftest.Require(t)
	r := startRecord(t, "-d", "1s", "--top", "0", "--http", "127.0.0.1:0")
	var url string
	deadline := time.After(30 * time.Second)
	for url == "" {
		select {
		case line, ok := <-r.lines:
			if !ok {
				t.Fatalf("kmemprof exited before serving: %s", r.stderr.String())
			}
			if rest, found := strings.CutPrefix(line, "serving "); found {
				if i := strings.Index(rest, " at "); i >= 0 {
					url = strings.Fields(rest[i+4:])[0]
				}
			}
		case <-deadline:
			t.Fatalf("no serving line: %s", r.stderr.String())
		}
	}
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Errorf("serving at %s, want loopback", url)
	}
	resp, err := http.Get(strings.TrimSuffix(url, "/") + "/ui/top")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /ui/top: %s", resp.Status)
	}
	r.stop(t, syscall.SIGINT)
}

// TestRecordContainerCgroup: a leak made inside a cgroup named like a Docker
// container's carries the cgroup path and the container id.
func TestRecordContainerCgroup(t *testing.T) {
	bpftest.Require(t)
	mnt := host.Cgroup2Mount()
	if mnt == "" {
		t.Fatal("cgroup2 is not mounted")
	}
	const id = "3f4e5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081"
	slice := filepath.Join(mnt, fmt.Sprintf("kmemprof-test-%d.slice", os.Getpid()))
	dir := filepath.Join(slice, "docker-"+id+".scope")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("making a test cgroup: %v", err)
	}
	t.Cleanup(func() {
		for i := 0; i < 50; i++ { // after the child is gone
			if err := os.Remove(dir); err == nil || os.IsNotExist(err) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		os.Remove(slice)
	})
	l := bpftest.StartIdleLeaker(t, 3000, dir)
	r := startRecord(t, "-d", "5m")
	l.Leak(t)
	r.stop(t, syscall.SIGINT)
	p := readProfile(t, r.out)
	want := strings.TrimPrefix(dir, mnt)
	var found bool
	for _, s := range p.Sample {
		if !has(funcs(s), "do_eventfd") || len(s.Label["pid"]) != 1 || s.Label["pid"][0] != strconv.Itoa(l.PID) {
			continue
		}
		found = true
		if got := s.Label["cgroup"]; len(got) != 1 || got[0] != want {
			t.Errorf("cgroup label %v, want %s", got, want)
		}
		if got := s.Label["container"]; len(got) != 1 || got[0] != "docker:"+id[:12] {
			t.Errorf("container label %v, want docker:%s", got, id[:12])
		}
	}
	if !found {
		t.Fatal("no do_eventfd sample of the leaking child")
	}
}

// TestRecordCommand: `record -- CMD` attaches, then runs CMD, and traces
// until it exits; a grandchild CMD left in the background holds n eventfds,
// which the profile shows with their count; kmemprof exits with CMD's status.
// A leaker outside CMD's tree leaks while CMD runs: it is in the profile
// of the whole system, and with --follow nothing outside the tree is.
func TestRecordCommand(t *testing.T) {
	bpftest.Require(t)
	const n = 1000
	for _, follow := range []bool{false, true} {
		t.Run(fmt.Sprintf("follow=%v", follow), func(t *testing.T) {
			dir := t.TempDir()
			held, proceed := filepath.Join(dir, "held"), filepath.Join(dir, "proceed")
			for _, f := range []string{held, proceed} {
				if err := unix.Mkfifo(f, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			pids := filepath.Join(dir, "pids")
			out := filepath.Join(dir, "kmem.pb.gz")
			// The grandchild is this test binary as the eventfd holder; the
			// shell waits until it holds them, says who is who, waits for
			// the test, and exits 7.
			// (Not on kmemprof's stderr: the test waits for that pipe to close.)
			script := `KMEMPROF_TEST_RUN_MAIN= "$0" -test.run='^$' > "$1" 2>/dev/null &
read line < "$1"
echo "$$ $line" > "$2"
read go < "$3"
exit 7`
			args := []string{"record", "-o", out, "--top", "0"}
			if follow {
				args = append(args, "--follow")
			}
			args = append(args, "--", "sh", "-c", script, os.Args[0], held, pids, proceed)
			cmd := kmemprofCmd(args...)
			cmd.Env = append(cmd.Env, bpftest.HoldEnv(n)...)
			var stdout, stderr lockedBuffer
			stderr.ch, stdout.ch = make(chan struct{}, 1), make(chan struct{}, 1)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			var shPID, holderPID int
			deadline := time.Now().Add(60 * time.Second)
			for {
				b, err := os.ReadFile(pids)
				if err == nil {
					// "SHPID held N HOLDERPID"
					if f := strings.Fields(string(b)); len(f) == 4 && strings.HasSuffix(string(b), "\n") {
						shPID, _ = strconv.Atoi(f[0])
						holderPID, _ = strconv.Atoi(f[3])
						break
					}
				}
				select {
				case err := <-done:
					t.Fatalf("kmemprof exited before the command's child held its eventfds: %v\n%s", err, stderr.String())
				default:
				}
				if time.Now().After(deadline) {
					cmd.Process.Kill()
					t.Fatalf("the command's child never held its eventfds:\n%s", stderr.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Cleanup(func() { syscall.Kill(holderPID, syscall.SIGTERM) })
			outside := bpftest.StartLeaker(t, 300)
			if err := os.WriteFile(proceed, []byte("go\n"), 0); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 7 {
					t.Fatalf("kmemprof record -- CMD exited with %v, want CMD's status 7\nstderr:\n%s", err, stderr.String())
				}
			case <-time.After(60 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("kmemprof did not exit after the command did:\n%s", stderr.String())
			}
			p := readProfile(t, out)
			objects := sampleIndex(t, p, "inuse_objects")
			var holderCtx int64
			pidsSeen := map[string]int64{}
			for _, s := range p.Sample {
				pid := ""
				if len(s.Label["pid"]) == 1 {
					pid = s.Label["pid"][0]
				}
				pidsSeen[pid] += s.Value[objects]
				// One eventfd context per eventfd, allocated by do_eventfd
				// itself (other allocations on its path: fd tables, ids).
				if pid == strconv.Itoa(holderPID) && callerOf(s) == "do_eventfd" {
					holderCtx += s.Value[objects]
				}
			}
			// Its n, and any the Go runtime made for itself (netpoll).
			if held := eventfdsOf(t, holderPID); held < n || holderCtx != int64(held) {
				t.Errorf("the command's grandchild holds %d eventfds (%d made by the test); the profile shows %d of their contexts", held, n, holderCtx)
			}
			outsideObjects := pidsSeen[strconv.Itoa(outside.PID)]
			if follow {
				for pid, objs := range pidsSeen {
					if pid != strconv.Itoa(shPID) && pid != strconv.Itoa(holderPID) {
						t.Errorf("--follow recorded %d objects of pid %q, outside the command's tree (%d, %d)", objs, pid, shPID, holderPID)
					}
				}
			} else if outsideObjects < 300 {
				t.Errorf("the whole system was to be traced, but the profile holds %d objects of the leaker outside the command (pid %d), which held 300 eventfds", outsideObjects, outside.PID)
			}
			if !strings.Contains(stderr.String(), "while sh runs") {
				t.Errorf("the tracing line does not say it traces while the command runs:\n%s", stderr.String())
			}
		})
	}
}

// TestRecordBadCommand: a command that cannot run is reported with the
// shell's status (127 not found, 126 not executable), before anything is
// attached, and no profile is written.
func TestRecordBadCommand(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "script")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		cmd  string
		code int
		msg  string
	}{
		{"no-such-command-kmemprof", 127, "command not found"},
		{filepath.Join(dir, "missing"), 127, "no such file"},
		{notExec, 126, "not executable"},
		{dir, 126, "is a directory"},
	} {
		out := filepath.Join(dir, "kmem.pb.gz")
		code, _, stderr := runInProcess("record", "-o", out, "--", c.cmd, "arg")
		if code != c.code || !strings.Contains(stderr, c.msg) {
			t.Errorf("record -- %s: exit %d, stderr %q; want %d and %q", c.cmd, code, stderr, c.code, c.msg)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("record -- %s wrote a profile", c.cmd)
		}
	}
}

// callerOf is the function that called the allocator: the first frame that
// is not an allocator function.
func callerOf(s *profile.Sample) string {
	for _, f := range funcs(s) {
		if !bpf.IsAllocatorFrame(f) {
			return f
		}
	}
	return ""
}

// eventfdsOf counts the eventfds process pid holds.
func eventfdsOf(t *testing.T, pid int) int {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("reading %s: %v", dir, err)
	}
	var n int
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && l == "anon_inode:[eventfd]" {
			n++
		}
	}
	return n
}

// TestRecordMergedCacheNames: objects of a slab cache the allocator merged
// others into carry the other names (merged_with), as /sys/kernel/slab
// lists them. Children held during the capture allocate struct pid, a cache
// SLUB merges on most kernels.
func TestRecordMergedCacheNames(t *testing.T) {
	bpftest.Require(t)
	aliases, err := host.SlabAliases(os.DirFS("/sys/kernel/slab"))
	if err != nil {
		t.Fatal(err)
	}
	if len(aliases["pid"]) == 0 {
		t.Skip("this kernel did not merge the pid cache with another (no alias in /sys/kernel/slab)")
	}
	r := startRecord(t, "-d", "5m", "--top", "0")
	var children []*exec.Cmd
	for range 100 {
		c := exec.Command("sleep", "60")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		children = append(children, c)
	}
	t.Cleanup(func() {
		for _, c := range children {
			c.Process.Kill()
			c.Wait()
		}
	})
	r.stop(t, syscall.SIGINT)
	p := readProfile(t, r.out)
	var pidGroup int
	for _, s := range p.Sample {
		c := s.Label[tracer.LabelCache]
		if len(c) != 1 || len(s.Label[tracer.LabelKind]) != 1 || s.Label[tracer.LabelKind][0] != "slab" {
			continue
		}
		want := strings.Join(aliases[c[0]], ",")
		got := strings.Join(s.Label[tracer.LabelMerged], ",")
		if got != want {
			t.Errorf("cache %s: %s=%q, want %q", c[0], tracer.LabelMerged, got, want)
		}
		if c[0] == "pid" || slices.Contains(aliases[c[0]], "pid") {
			pidGroup++
		}
	}
	if pidGroup == 0 {
		t.Errorf("no sample of the cache pid was merged into (%v), although 100 children were forked", aliases["pid"])
	}
}

// memcgParent makes a memory cgroup for a test under the memory
// controller's hierarchy (v1 here, v2 in the kernel matrix), with the
// controller handed down to its children on v2. It returns its directory
// and its path relative to the hierarchy's root.
func memcgParent(t *testing.T) (dir, rel string) {
	t.Helper()
	mount, v1 := host.MemcgMount()
	if mount == "" {
		t.Skip("the memory cgroup controller is not mounted")
	}
	enable := func(d string) {
		if err := os.WriteFile(filepath.Join(d, "cgroup.subtree_control"), []byte("+memory"), 0); err != nil {
			t.Skipf("cannot enable the memory controller below %s: %v", d, err)
		}
	}
	if !v1 {
		enable(mount)
	}
	rel = fmt.Sprintf("/kmemprof-memcg-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "_"))
	dir = filepath.Join(mount, rel)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rmdirRetry(dir) })
	if !v1 {
		enable(dir)
	}
	return dir, rel
}

// rmdirRetry removes a cgroup directory, retrying while the processes that
// just left it are being reaped.
func rmdirRetry(dir string) error {
	var err error
	for range 50 {
		if err = os.Remove(dir); err == nil || os.IsNotExist(err) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// tmpfsDir mounts a tmpfs for a test: its files' inodes and dentries live
// in slab until it is unmounted, whoever made them.
func tmpfsDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	if err := syscall.Mount("tmpfs", d, "tmpfs", 0, "size=64m"); err != nil {
		t.Fatalf("mounting a tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(d, syscall.MNT_DETACH) })
	return d
}

// fillInMemcg runs a shell that joins the memory cgroup dir, creates n
// empty files in files (its slab objects outlive the shell) and exits. It
// returns the shell's pid.
func fillInMemcg(t *testing.T, dir, files string, n int) uint32 {
	t.Helper()
	if err := os.MkdirAll(files, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", `echo $$ > "$1/cgroup.procs" || exit 1
i=0; while [ $i -lt $3 ]; do : > "$2/f$i"; i=$((i+1)); done`, "sh", dir, files, strconv.Itoa(n))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("filling %s from memory cgroup %s: %v %s", files, dir, err, out)
	}
	return uint32(cmd.Process.Pid)
}

// fileCaches are the slab caches of a tmpfs file's inode and dentry.
var fileCaches = []string{"shmem_inode_cache", "dentry"}

// memcgShare returns, over the in-use objects of the samples whose pid
// label is pid and whose cache is one of caches (any when nil), the share
// whose memcg label is want and whose memcg_removed label is "true" exactly
// when removed, and their count.
//
// The files' objects are what the shells make once in their memory cgroup;
// others of the same pid can be older, from before it joined (the maple
// nodes of its exec, the dentry of cgroup.procs), and are rightly charged
// to the memcg it was in then.
func memcgShare(t *testing.T, p *profile.Profile, pid uint32, caches []string, want string, removed bool) (float64, int64) {
	t.Helper()
	idx := sampleIndex(t, p, "inuse_objects")
	var all, good int64
	for _, s := range p.Sample {
		if pl := s.Label[tracer.LabelPID]; len(pl) != 1 || pl[0] != strconv.FormatUint(uint64(pid), 10) {
			continue
		}
		if c := s.Label[tracer.LabelCache]; caches != nil && (len(c) != 1 || !slices.Contains(caches, c[0])) {
			continue
		}
		n := s.Value[idx]
		all += n
		m := s.Label[tracer.LabelMemcg]
		gone := len(s.Label[tracer.LabelMemcgRemoved]) == 1 && s.Label[tracer.LabelMemcgRemoved][0] == "true"
		if len(m) == 1 && m[0] == want && gone == removed {
			good += n
		}
	}
	if all == 0 {
		return 0, 0
	}
	return float64(good) / float64(all), all
}

// TestRecordRemovedMemcgs: memory cgroups are made during a capture, a
// shell in each makes tmpfs files, and all but one are removed while the
// files (dentries, inodes) live on. At least 95% of each shell's outstanding
// objects carry their memcg's path, with memcg_removed=true exactly for the
// removed ones; the summary names every removed memcg. On cgroup v1 here,
// v2 in the kernel matrix.
func TestRecordRemovedMemcgs(t *testing.T) {
	bpftest.Require(t)
	parent, rel := memcgParent(t)
	files := tmpfsDir(t)
	r := startRecord(t, "-d", "10m")
	const nMemcgs, nFiles = 4, 300
	type made struct {
		path    string
		pid     uint32
		removed bool
	}
	var ms []made
	for i := range nMemcgs + 1 {
		name := fmt.Sprintf("c%d", i)
		removed := i < nMemcgs
		if !removed {
			name = "live"
		}
		dir := filepath.Join(parent, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		pid := fillInMemcg(t, dir, filepath.Join(files, name), nFiles)
		if removed {
			if err := rmdirRetry(dir); err != nil {
				t.Fatalf("removing memory cgroup %s: %v", dir, err)
			}
		} else {
			t.Cleanup(func() { rmdirRetry(dir) })
		}
		ms = append(ms, made{path: rel + "/" + name, pid: pid, removed: removed})
	}
	r.stop(t, syscall.SIGINT)
	p := readProfile(t, r.out)
	out := r.stdout.String()
	for _, m := range ms {
		allShare, all := memcgShare(t, p, m.pid, nil, m.path, m.removed)
		share, n := memcgShare(t, p, m.pid, fileCaches, m.path, m.removed)
		t.Logf("%s (pid %d, removed %v): %d file objects, %.1f%% labelled so; of all its %d objects %.1f%%", m.path, m.pid, m.removed, n, 100*share, all, 100*allShare)
		if n < 2*nFiles {
			t.Errorf("%s: %d outstanding objects of pid %d in %v, want at least %d (an inode and a dentry per file)", m.path, n, m.pid, fileCaches, 2*nFiles)
		}
		if share < 0.95 {
			t.Errorf("%s: %.1f%% of pid %d's file objects labelled memcg=%s with memcg_removed=%v, want 95%% or more", m.path, 100*share, m.pid, m.path, m.removed)
		}
		inSummary := strings.Contains(out, "  "+m.path+"\n")
		if inSummary != m.removed {
			t.Errorf("summary lists %s among removed memcgs: %v, want %v", m.path, inSummary, m.removed)
		}
	}
	if !strings.Contains(out, "memory cgroups removed, objects charged to them still live:") {
		t.Errorf("no removed-memcg section in the summary")
	}
	if t.Failed() {
		t.Logf("summary:\n%s", out)
	}
}

// TestRecordMemcgFilter: --memcg keeps the allocations charged to a memory
// cgroup and those below it, and only those.
func TestRecordMemcgFilter(t *testing.T) {
	bpftest.Require(t)
	parent, rel := memcgParent(t)
	files := tmpfsDir(t)
	r := startRecord(t, "-d", "10m", "--memcg", parent)
	child := filepath.Join(parent, "inside")
	if err := os.Mkdir(child, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rmdirRetry(child) })
	inside := fillInMemcg(t, child, filepath.Join(files, "inside"), 200)
	// A shell outside the filter, in the hierarchy's root.
	mount, _ := host.MemcgMount()
	outside := fillInMemcg(t, mount, filepath.Join(files, "outside"), 200)
	r.stop(t, syscall.SIGINT)
	p := readProfile(t, r.out)
	share, n := memcgShare(t, p, inside, fileCaches, rel+"/inside", false)
	if n < 400 || share < 0.95 {
		t.Errorf("--memcg %s: %d file objects of the shell inside, %.1f%% labelled %s/inside; want 400 or more, 95%% or more", parent, n, 100*share, rel)
	}
	for _, s := range p.Sample {
		if m := s.Label[tracer.LabelMemcg]; len(m) != 1 || !strings.HasPrefix(m[0], rel) {
			t.Errorf("--memcg %s: sample with memcg=%v (pid %v)", parent, m, s.Label[tracer.LabelPID])
			break
		}
	}
	if _, n := memcgShare(t, p, outside, nil, "/", false); n != 0 {
		t.Errorf("--memcg %s: %d objects of a shell outside it were recorded", parent, n)
	}
}

// TestRecordBadMemcg: a --memcg that names no memory cgroup is a clear
// error, before anything is attached, and no profile is written.
func TestRecordBadMemcg(t *testing.T) {
	bpftest.Require(t)
	out := filepath.Join(t.TempDir(), "kmem.pb.gz")
	code, _, stderr := runInProcess("record", "-d", "1s", "-o", out, "--memcg", "/kmemprof-no-such-memcg")
	if code == 0 || !strings.Contains(stderr, "--memcg /kmemprof-no-such-memcg") || !strings.Contains(stderr, "give a memory cgroup's path") {
		t.Errorf("record --memcg of no cgroup: exit %d, stderr %q; want an error that says what to give", code, stderr)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a profile was written")
	}
}

// TestRecordGrowthFileStorm: during a storm of 30,000 files made and
// stat'ed, a steady leak of 5,000 eventfds is the first growth row of the
// summary and the top of the profile's growth_space. The storm's dentries
// and inodes grow more, steadily, but the kernel reclaims them; their LSM
// blobs (lsm_inode_cache, allocated in alloc_inode) are freed with their
// inode and must not outrank the leak either.
func TestRecordGrowthFileStorm(t *testing.T) {
	bpftest.Require(t)
	r := startRecord(t, "-d", "10m", "--interval", "500ms")
	// Both run side by side; the capture ends with the leak whole, the
	// storm still going where the machine is slow (under emulation it
	// makes a few thousand files in that time, not its 30,000): a leak
	// that had stopped climbing long before the end would not be steady.
	storm := bpftest.StartFileStorm(t, t.TempDir(), 30000, 6*time.Second)
	leaker := bpftest.StartSteadyLeaker(t, 5000, 6*time.Second)
	leaker.Wait(t, "held")
	time.Sleep(time.Second) // two more intervals
	r.stop(t, syscall.SIGINT)
	p := readProfile(t, r.out)

	growth := sampleIndex(t, p, "growth_space")
	inuse := sampleIndex(t, p, "inuse_objects")
	type row struct {
		frames        []string
		growth        int64
		objects, leak int64
		caches        map[string]bool
	}
	byStack := map[string]*row{}
	var stormObjects int64
	for _, s := range p.Sample {
		var ids []string
		for _, l := range s.Location {
			ids = append(ids, strconv.FormatUint(l.ID, 10))
		}
		k := strings.Join(ids, ",")
		if byStack[k] == nil {
			byStack[k] = &row{frames: funcs(s), caches: map[string]bool{}}
		}
		rw := byStack[k]
		rw.growth += s.Value[growth]
		rw.objects += s.Value[inuse]
		rw.caches[strings.Join(s.Label["cache"], ",")] = true
		switch strings.Join(s.Label["pid"], ",") {
		case strconv.Itoa(leaker.PID):
			rw.leak += s.Value[inuse]
		case strconv.Itoa(storm.PID):
			stormObjects += s.Value[inuse]
		}
	}
	t.Logf("the storm's objects in the profile: %d", stormObjects)
	// Each file is an inode, a dentry, an LSM blob and more: a thousand
	// objects is a few hundred files, which a loaded emulated guest makes
	// in the storm's 6 s (2,463 objects seen on one; 30,000 files here).
	if stormObjects < 1000 {
		t.Errorf("the storm's objects in the profile: %d, want its files' inodes, dentries and more (at least 1,000)", stormObjects)
	}
	var top *row
	for _, rw := range byStack {
		if top == nil || rw.growth > top.growth {
			top = rw
		}
	}
	// The leak's call sites are shared with the storm's churn (each open
	// allocates a filp where the eventfd's is allocated): a stack is the
	// leak's when most of what it holds is the leaker's.
	if top == nil || top.growth == 0 || 2*top.leak < top.objects {
		t.Errorf("the top of growth_space is not the leak's: %+v", top)
	}
	lines := strings.Split(r.stdout.String(), "\n")
	if len(lines) < 2 || !strings.Contains(lines[0], "GROWTH") {
		t.Fatalf("summary has no growth column:\n%s", r.stdout.String())
	}
	if !strings.Contains(lines[1], " filp") && !strings.Contains(lines[1], " kmalloc-") && !strings.Contains(lines[1], "lsm_file_cache") {
		t.Errorf("the summary's first growth row is not the eventfd leak's:\n%s", r.stdout.String())
	}
	for _, c := range []string{"(reclaimable)", "(freed with", "lsm_inode_cache"} {
		if strings.Contains(lines[1], c) {
			t.Errorf("the summary's first growth row is %s:\n%s", c, r.stdout.String())
		}
	}
}
