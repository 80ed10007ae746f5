package main

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/pprof/profile"
	"golang.org/x/sys/unix"

	"github.com/kmemprof/kmemprof/bpf"
	"github.com/kmemprof/kmemprof/bpf/bpftest"
	"github.com/kmemprof/kmemprof/symbolize/host"
)

// captureModesEnv picks the attach modes TestCaptureCheck runs
// (comma-separated); all of them by default.
const captureModesEnv = "KMEMPROF_CAPTURE_MODES"

// captureArgsEnv adds options to the check's kmemprof record (for
// debugging: a failure's stacks with "--mode full --top 40").
const captureArgsEnv = "KMEMPROF_CAPTURE_ARGS"

// modeRefused matches what kmemprof says when the kernel cannot offer an
// attach mode at all (no BPF trampolines, no kprobes): the mode is not
// available here, which is not a failure of the capture.
var modeRefused = regexp.MustCompile(`cannot attach BPF trampolines|has no kprobe support`)

// TestCaptureCheck is the capture check of the kernel matrix, beside the
// selftest: in each attach mode, as a user runs it (`kmemprof record
// --kinds slab,page` started first, the workload a second later), one
// process makes several kinds of kernel objects and holds them to the end,
// another makes the same and releases them mid-capture:
//   - tmpfs files: shmem_inode_cache and dentry, from kmem_cache_alloc_lru;
//   - timerfds: a kmalloc'd timerfd_ctx, a file (filp) and a dentry each;
//   - pipes with a page written into each: a page allocation, two files
//     and a dentry.
//
// The held objects must be in the profile exactly (+-3%), counted by
// process and cache, and the released ones absent. The guest's
// /proc/slabinfo must agree: the held objects are there, and the profile
// holds no more of a cache than the kernel does. The kernel must log no
// Oops, BUG or WARNING meanwhile.
func TestCaptureCheck(t *testing.T) {
	bpftest.Require(t)
	modes := []string{"raw_tp", "tp_btf", "tracepoint", "fentry", "kprobe"}
	if env := os.Getenv(captureModesEnv); env != "" {
		modes = strings.Split(env, ",")
	}
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) { captureCheck(t, mode) })
	}
}

// captureObjects is what one Objects child of n made, by what the check
// counts: its samples' inuse_objects summed per kind of object.
type captureObjects struct {
	shmemInodes, timerfdCtx, files, dentries, pipePages int64
}

func (c captureObjects) String() string {
	return "shmem_inode_cache " + strconv.FormatInt(c.shmemInodes, 10) +
		", timerfd_ctx " + strconv.FormatInt(c.timerfdCtx, 10) +
		", filp " + strconv.FormatInt(c.files, 10) +
		", dentry " + strconv.FormatInt(c.dentries, 10) +
		", pipe pages " + strconv.FormatInt(c.pipePages, 10)
}

// want is what a child of n objects holds of each kind.
func wantObjects(n int) captureObjects {
	pipes := int64(n / 4)
	return captureObjects{
		shmemInodes: int64(n),
		timerfdCtx:  int64(n),
		files:       int64(n) + 2*pipes, // a timerfd's file, a pipe's two
		dentries:    2*int64(n) + pipes, // a file's, a timerfd's, a pipe's
		pipePages:   pipes,
	}
}

func countObjects(t *testing.T, p *profile.Profile, pid int) captureObjects {
	t.Helper()
	objects := sampleIndex(t, p, "inuse_objects")
	var c captureObjects
	for _, s := range p.Sample {
		if len(s.Label["pid"]) != 1 || s.Label["pid"][0] != strconv.Itoa(pid) {
			continue
		}
		v := s.Value[objects]
		cache := ""
		if len(s.Label["cache"]) == 1 {
			cache = s.Label["cache"][0]
		}
		fs := funcs(s)
		switch {
		case cache == "shmem_inode_cache":
			c.shmemInodes += v
		case strings.HasPrefix(cache, "kmalloc") && strings.Contains(callSite(fs), "timerfd_create"):
			c.timerfdCtx += v
		case cache == "filp":
			c.files += v
		case cache == "dentry":
			c.dentries += v
		case len(s.Label["kind"]) == 1 && s.Label["kind"][0] == "page" && (has(fs, "anon_pipe_write") || has(fs, "pipe_write")):
			c.pipePages += v
		}
	}
	return c
}

// slabActive reads /proc/slabinfo's active objects per cache.
func slabActive(t *testing.T) map[string]uint64 {
	t.Helper()
	v, err := host.ReadSystemView()
	if err != nil || v.Caches == nil {
		t.Fatalf("reading /proc/slabinfo: %v", err)
	}
	out := map[string]uint64{}
	for _, c := range v.Caches {
		out[c.Name] = c.ActiveObjs
	}
	return out
}

// kernelLog reads the kernel's log buffer (dmesg).
func kernelLog(t *testing.T) string {
	t.Helper()
	n, err := unix.Klogctl(unix.SYSLOG_ACTION_SIZE_BUFFER, nil)
	if err != nil {
		t.Fatalf("sizing the kernel log: %v", err)
	}
	buf := make([]byte, n)
	n, err = unix.Klogctl(unix.SYSLOG_ACTION_READ_ALL, buf)
	if err != nil {
		t.Fatalf("reading the kernel log: %v", err)
	}
	return string(buf[:n])
}

// kernelTrouble returns the lines of the kernel log after before that report
// an oops, a BUG or a WARNING.
func kernelTrouble(before, after string) []string {
	// The buffer may have wrapped: compare by the lines not seen before.
	seen := map[string]bool{}
	for _, l := range strings.Split(before, "\n") {
		seen[l] = true
	}
	var out []string
	for _, l := range strings.Split(after, "\n") {
		if seen[l] {
			continue
		}
		if strings.Contains(l, "Oops") || strings.Contains(l, "BUG:") || strings.Contains(l, "WARNING:") || strings.Contains(l, "Unrecoverable kprobe") {
			out = append(out, l)
		}
	}
	return out
}

func within(got, want int64, pct int64) bool {
	d := got - want
	if d < 0 {
		d = -d
	}
	return d*100 <= want*pct
}

func captureCheck(t *testing.T, mode string) {
	const n = 2000
	logBefore := kernelLog(t)
	held := bpftest.StartObjects(t, n, tmpfsDir(t))
	released := bpftest.StartObjects(t, n, tmpfsDir(t))
	slab0 := slabActive(t)
	began := time.Now()
	args := []string{"--attach", mode, "--kinds", "slab,page", "-d", "10m", "--top", "12"}
	// More options for whoever debugs a failure (e.g. "--mode full --top 40").
	args = append(args, strings.Fields(os.Getenv(captureArgsEnv))...)
	r, err := startRecordWait(t, 5*time.Minute, args...)
	if err != nil {
		if msg := err.Error(); modeRefused.MatchString(msg) {
			t.Logf("NA: the kernel refuses %s: %s", mode, modeRefused.FindString(msg))
			return
		}
		t.Fatal(err)
	}
	t.Logf("tracing after %v: %s", time.Since(began).Round(time.Millisecond), firstLineOf(r.stderr.String()))
	// The workload starts a second after the tracing line, as a user's would.
	time.Sleep(time.Second)
	held.Make(t)
	released.Make(t)
	time.Sleep(time.Second)
	released.Release(t)
	// Dentries and inodes are freed after an RCU grace period.
	time.Sleep(3 * time.Second)
	slab1 := slabActive(t) // the programs still attached, the held objects held
	r.stop(t, syscall.SIGINT)
	r.checkProgramsGone(t)
	p := readProfile(t, r.out)
	if trouble := kernelTrouble(logBefore, kernelLog(t)); len(trouble) > 0 {
		t.Errorf("the kernel logged during the capture:\n%s", strings.Join(trouble, "\n"))
	}
	got := countObjects(t, p, held.PID)
	want := wantObjects(n)
	t.Logf("held (pid %d): %s; want %s", held.PID, got, want)
	for _, k := range []struct {
		name      string
		got, want int64
	}{
		{"shmem_inode_cache", got.shmemInodes, want.shmemInodes},
		{"timerfd_ctx (kmalloc)", got.timerfdCtx, want.timerfdCtx},
		{"filp", got.files, want.files},
		{"dentry", got.dentries, want.dentries},
		{"pipe pages", got.pipePages, want.pipePages},
	} {
		if !within(k.got, k.want, 3) {
			t.Errorf("held %s: %d in the profile, want %d +-3%%", k.name, k.got, k.want)
		}
	}
	gone := countObjects(t, p, released.PID)
	t.Logf("released (pid %d): %s", released.PID, gone)
	// A timerfd's context is freed with kfree_rcu: where kvfree_call_rcu
	// has no hook (no fentry, no kprobes), it cannot be seen to go.
	allHooked := strings.Contains(r.stderr.String(), "every slab free path is hooked")
	for _, k := range []struct {
		name      string
		got, made int64
		rcu       bool
	}{
		{"shmem_inode_cache", gone.shmemInodes, want.shmemInodes, false},
		{"timerfd_ctx (kmalloc)", gone.timerfdCtx, want.timerfdCtx, true},
		{"filp", gone.files, want.files, false},
		{"dentry", gone.dentries, want.dentries, false},
		{"pipe pages", gone.pipePages, want.pipePages, false},
	} {
		if k.rcu && !allHooked {
			t.Logf("released %s not checked: kfree_rcu is not hooked on this kernel", k.name)
			continue
		}
		if k.got*100 > k.made*3 {
			t.Errorf("released %s: %d of %d still in the profile", k.name, k.got, k.made)
		}
	}
	// The kernel's own count: the held objects exist, and the profile
	// holds no more of a cache than the kernel does.
	// (Its growth is only logged: other tests' tmpfs inodes may be freed
	// meanwhile, and SLUB counts free objects kept per CPU as active.)
	t.Logf("/proc/slabinfo: shmem_inode_cache %d -> %d active objects", slab0["shmem_inode_cache"], slab1["shmem_inode_cache"])
	if slab1["shmem_inode_cache"] < uint64(n) {
		t.Errorf("/proc/slabinfo: %d shmem_inode_cache objects active while the %d files are held: the workload did not do what the check assumes", slab1["shmem_inode_cache"], n)
	}
	objects := sampleIndex(t, p, "inuse_objects")
	byCache := map[string]int64{}
	for _, s := range p.Sample {
		if len(s.Label["cache"]) == 1 {
			byCache[s.Label["cache"][0]] += s.Value[objects]
		}
	}
	for _, c := range []string{"shmem_inode_cache", "filp", "dentry"} {
		if byCache[c] > int64(slab1[c]) {
			t.Errorf("the profile holds %d %s objects, /proc/slabinfo %d active: frees were missed", byCache[c], c, slab1[c])
		}
	}
	// No stack crosses the tracing machinery: a trampoline left inside one
	// (a slab's pages allocated under a kmem_cache_alloc hooked by fexit),
	// or a BPF program named as an allocator's callee, misnames its site.
	if bad := tracingFramesInside(p); len(bad) > 0 {
		t.Errorf("stacks through the tracing machinery:\n%s", strings.Join(bad, "\n"))
	}
	// The leaves are the code that allocated (pprof's flat column): the
	// allocator is a label.
	if bad := allocatorLeaves(p, held.PID); len(bad) > 0 {
		t.Errorf("stacks whose leaf is the allocator, or with no allocator label:\n%s", strings.Join(bad, "\n"))
	}
	// kmemprof report prints the rows the capture printed.
	if code, out, errOut := runInProcess("report", "--top", "12", r.out); code != exitOK {
		t.Errorf("kmemprof report: exit %d: %s", code, errOut)
	} else if got, want := summaryTable(out), summaryTable(r.stdout.String()); got != want || want == "" {
		t.Errorf("kmemprof report's rows differ from the capture's:\n--- capture\n%s\n--- report\n%s", want, got)
	}
	losses := []string{"selfcheck_growth_untracked"}
	if allHooked {
		// Where a free path has no hook (no fentry, no kprobes), objects
		// freed through it stay tracked: found again at their next
		// allocation, and beyond what the kernel holds.
		losses = append(losses, "alloc_at_tracked_ptr", "selfcheck_over_kernel")
	}
	for _, name := range losses {
		if v := commentCounter(p, name); v != 0 {
			t.Errorf("%s=%d in a clean capture", name, v)
		}
	}
	if t.Failed() {
		t.Logf("kmemprof's stdout:\n%s\nstderr:\n%s", r.stdout.String(), r.stderr.String())
	}
}

// tracingFramesInside lists the profile's stacks (up to 5) that hold a BPF
// trampoline, or a BPF program called by an allocator function: frames of
// the tracing machinery where the kernel's own should be.
func tracingFramesInside(p *profile.Profile) []string {
	var bad []string
	for _, s := range p.Sample {
		names := funcs(s)
		for i, n := range names {
			tramp := strings.HasPrefix(n, "bpf_trampoline_")
			progUnderAlloc := strings.HasPrefix(n, "bpf_prog_") && i+1 < len(names) && bpf.IsAllocatorFrame(names[i+1])
			if tramp || progUnderAlloc {
				bad = append(bad, strings.Join(names, " < "))
				break
			}
		}
		if len(bad) == 5 {
			break
		}
	}
	return bad
}

// summaryTable is the table of a summary: from its IN-USE header to the
// line before the totals.
func summaryTable(out string) string {
	_, rest, ok := strings.Cut(out, "IN-USE")
	if !ok {
		return ""
	}
	table, _, _ := strings.Cut(rest, "\noutstanding:")
	return "IN-USE" + table
}

// allocatorLeaves lists the profile's stacks (up to 5) whose leaf is an
// allocator function, and those of process pid that were walked (not a
// call site only) but carry no allocator label.
func allocatorLeaves(p *profile.Profile, pid int) []string {
	var bad []string
	for _, s := range p.Sample {
		names := funcs(s)
		if len(names) == 0 || strings.HasPrefix(names[0], "[stack lost") {
			continue
		}
		walked := !slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, "[stack not walked") })
		ours := len(s.Label["pid"]) == 1 && s.Label["pid"][0] == strconv.Itoa(pid)
		if bpf.IsAllocatorFrame(names[0]) || (ours && walked && len(s.Label["allocator"]) != 1) {
			bad = append(bad, fmt.Sprintf("%s (allocator=%v)", strings.Join(names, " < "), s.Label["allocator"]))
		}
		if len(bad) == 5 {
			break
		}
	}
	return bad
}

// callSite is the first frame of a stack past the allocator's.
func callSite(fs []string) string {
	for _, f := range fs {
		if !bpf.IsAllocatorFrame(f) {
			return f
		}
	}
	return ""
}

func firstLineOf(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
