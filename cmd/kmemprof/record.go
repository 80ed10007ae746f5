package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/kmemprof/kmemprof/bpf"
	"github.com/kmemprof/kmemprof/tracer"
)

const recordUsage = `Usage: kmemprof record [options]
       kmemprof record [options] -- CMD [ARGS...]

Trace kernel allocations and frees, then write the allocations still
outstanding at the end as a pprof profile (0600, written atomically). Ctrl-C
(SIGINT) or SIGTERM ends the capture early; the profile is still written.

With a command after --, kmemprof attaches first, then runs CMD (its stdin,
stdout, stderr and environment passed through) and traces until CMD exits, or
until --duration (if given) or Ctrl-C ends the capture first; a CMD still
running then gets SIGTERM once the profile is written. kmemprof exits with
CMD's exit status (128+N if a signal N killed it; 127 if CMD is not found,
126 if it cannot be run: nothing is traced then). The whole system is traced
unless --follow keeps only CMD and the processes it starts:
  sudo kmemprof record --follow -- ./reproduce.sh

Once attached, kmemprof prints a line starting with "tracing" (hooks and
attach mode) on stderr; on a terminal a progress line follows. At the end it
prints the ten heaviest in-use stacks, every loss counter, the self-check,
and the command that opens the profile. The self-check runs as the capture
ends, programs still attached: per slab cache, what kmemprof tracks against
the kernel's count (/proc/slabinfo, read just before and after): more
tracked than the kernel holds means frees were missed (selfcheck_over_kernel);
without a filter or sampling, a cache grown by more than is tracked means
allocations were missed (selfcheck_growth_untracked).

Options:
  -d, --duration D       how long to trace (default 10s, or until CMD exits;
                         e.g. 30s, 2m, or 45 for seconds)
  -o, --output FILE      profile to write (default kmem.pb.gz; one there already is
                         kept as FILE.old); - for stdout (the summary then goes
                         to stderr)
      --mode MODE        what each allocation costs and gives (default adaptive):
                           adaptive  every allocation is tracked with its call site;
                                     full stacks are walked only at call sites with
                                     at least --hot-threshold allocations outstanding
                                     (steady churn costs no stack walk)
                           full      every allocation with its full kernel stack
                                     (about 2 us per allocation)
                           sample    one allocation in --sample N with its full stack;
                                     values are scaled by N (estimates)
      --sample N         sampling rate for --mode sample (default 64); giving
                         --sample alone selects --mode sample
      --hot-threshold N  --mode adaptive: outstanding allocations at a call site
                         before its stacks are walked (default 64)
      --interval D       measure every stack's outstanding allocations every D
                         (e.g. 5s) and rank by growth: how steadily each stack
                         still climbs in the second half of the capture. Adds
                         growth_objects/growth_space to the profile, which count
                         unreclaimable growth only; the summary lists it first.
                         Slab caches the kernel reclaims (dentry, inode caches)
                         are marked "(reclaimable)", and objects freed with them
                         (an inode's LSM blob, a dentry's name) "(freed with
                         CACHE)": their growth is shown after the rest
      --min-age D        keep only allocations at least D old at the end
                         (e.g. 2s: leaves out short-lived churn); default 0
      --kinds LIST       allocators to trace, comma-separated (default slab):
                           slab    kmem_cache_alloc/free and kmalloc/kfree
                           page    mm_page_alloc/free (page allocator)
                           percpu  percpu_alloc/free_percpu
  -p, --pid PID          only allocations made by this process
      --follow           with -- CMD: only allocations made by CMD and every
                         process it starts (children, grandchildren... as they
                         are forked; filtered in the kernel)
      --cgroup PATH      only allocations by tasks in this cgroup v2 directory
                         or below it (e.g. /sys/fs/cgroup/system.slice/foo.service)
      --memcg PATH       only allocations charged to this memory cgroup or one
                         below it, on cgroup v1 or v2: its path under the memory
                         controller's mount (e.g. /sys/fs/cgroup/memory/docker)
                         or relative to it (/docker)
      --cache NAMES      only these slab caches, comma-separated, up to 4
                         (e.g. filp,kmalloc-64; kmalloc-N matches its cg/rcl variants)
      --min-size BYTES   only allocations of at least BYTES allocated bytes
      --nested-frees MODE
                         exact (default) or lazy. From Linux 6.1 the kernel does
                         not run a program nested in itself: a free in an
                         interrupt during the free program (RCU callbacks) is
                         caught by a second, backup program on each free hook.
                         exact attaches it from the start; lazy only once the
                         kernel reports such a free: cheaper where frees never
                         nest (0.07-0.10x less on open/close), but the frees of
                         that first interrupt are lost (counted) and look
                         outstanding until their memory is reused
      --attach MODE      auto (default), raw_tp, tp_btf, tracepoint, fentry or
                         kprobe; auto picks the first that works, cheapest first.
                         The tracepoint modes also hook kmem_cache_free_bulk
                         (no tracepoint) with fentry or a kprobe where the
                         kernel allows; fentry and kprobe modes hook the
                         slab allocator's functions (pages and per-CPU
                         allocations from their raw tracepoints)
      --stack-depth N    deepest kernel stack recorded (default 64, max 127)
      --max-outstanding N
                         capacity of the in-kernel outstanding map per kind
                         (default 1048576); more is counted as outstanding_map_full
      --top N            rows in the terminal summary (default 10; 0 for none:
                         losses are still printed, on stderr)
      --http ADDR        when done, open the profile in the pprof web UI at ADDR
                         (e.g. 127.0.0.1:8080) until Ctrl-C; loopback only unless
                         --allow-remote (the profile holds kernel addresses)
      --allow-remote     let --http listen on a non-loopback address
      --tag TAGS         Windows: only these pool tags, comma-separated, up to 4
      --pooltag FILE     Windows: pooltag.txt to name the driver of each tag
      --stop-leftover    Windows: stop the pool session a kmemprof that was
                         killed left running, then trace (without it, kmemprof
                         says it runs and exits)
  -h, --help             show this help

On Windows, record traces kernel pool allocations (ETW PoolAlloc/PoolFree with
kernel stacks) instead. That live path is built and its decoding is tested
against real traces Windows wrote, but it has not yet been run on Windows;
'kmemprof convert' of a trace recorded with wpr or xperf is the tested way.
--kinds, --cgroup, --memcg, --cache, --attach, --mode, --sample,
--hot-threshold, --min-size, --stack-depth, --max-outstanding, --nested-frees,
--follow and -- CMD are Linux-only.

Filters run in the kernel before the stack walk, so they also cut overhead.
Frees are always matched, whoever frees.

Reading the output:
  go tool pprof -top kmem.pb.gz                         in-use bytes by function
  go tool pprof -sample_index=inuse_objects -top kmem.pb.gz
  go tool pprof -tagfocus=cache=filp -top kmem.pb.gz    one slab cache
  go tool pprof -tags kmem.pb.gz                        caches, comms, pids, cgroups
  go tool pprof -http=127.0.0.1:8080 kmem.pb.gz         flame graph in a browser
  go tool pprof -diff_base=a.pb.gz -top b.pb.gz         two captures' leftovers
                                                        (each holds only its own
                                                        window's allocations)

Sample types: inuse_space (default), inuse_objects, alloc_space,
alloc_objects (with --mode full or sample, alloc_* count every allocation made
during the capture, freed or not; in the default mode they equal inuse_*).
Labels: kind, cache, comm, pid, cgroup, memcg (the memory cgroup charged, v1
or v2), memcg_removed=true (its memcg was removed while the objects live on:
a dead container's kernel memory), container, pod, accounted, allocator (the
allocator function called: its frames leave the stacks, so that the leaf is
the code that allocated), reclaimable, reclaimable_owner, merged_with,
frees_untraced; pages: order, gfp, migratetype; numeric labels bytes,
requested (behind REQ%) and with --interval steadiness. The summary lists
removed memcgs whose objects live on.

Needs root, or CAP_BPF + CAP_PERFMON + CAP_SYSLOG (or CAP_SYS_ADMIN), and a
kernel with BTF (/sys/kernel/btf/vmlinux).
`

// recordOptions is a parsed `kmemprof record` command line.
type recordOptions struct {
	tags    []string // Windows pool tags to trace
	pooltag string   // Windows pooltag.txt for the driver label
	// stopLeftover stops a Windows pool session a killed kmemprof left.
	stopLeftover bool
	duration     time.Duration
	interval     time.Duration // 0: no growth series
	http         string        // serve the profile in the web UI at this address when done
	output       string
	minAge       time.Duration
	top          int
	bpf          bpf.Config
	cgroupFlag   string
	// command is the command after "--" (nil: none); commandPath is its
	// resolved executable. exitStatus is what kmemprof exits with when there
	// is a command: the command's status.
	command     []string
	commandPath string
	exitStatus  int
}

// parseRecord parses the record command line. Every error is a usageError;
// --help returns flag.ErrHelp after printing the usage to stdout.
func parseRecord(args []string, stdout io.Writer) (*recordOptions, error) {
	fs := flag.NewFlagSet("record", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported by the caller, usage by -h
	var (
		duration, minAge                    string
		output, kinds, attach, caches, cgrp string
		pid, minSize                        string
		stackDepth, maxOutstanding, top     int
		mode                                string
		sample, hot                         int
		help, follow                        bool
	)
	fs.StringVar(&duration, "duration", "10s", "")
	fs.StringVar(&duration, "d", "10s", "")
	fs.StringVar(&output, "output", "kmem.pb.gz", "")
	fs.StringVar(&output, "o", "kmem.pb.gz", "")
	fs.StringVar(&minAge, "min-age", "0s", "")
	fs.StringVar(&kinds, "kinds", "slab", "")
	fs.StringVar(&pid, "pid", "", "")
	fs.StringVar(&pid, "p", "", "")
	fs.BoolVar(&follow, "follow", false, "")
	var nestedFrees string
	fs.StringVar(&nestedFrees, "nested-frees", "exact", "")
	fs.StringVar(&cgrp, "cgroup", "", "")
	var memcg string
	fs.StringVar(&memcg, "memcg", "", "")
	fs.StringVar(&caches, "cache", "", "")
	fs.StringVar(&minSize, "min-size", "0", "")
	fs.StringVar(&attach, "attach", "auto", "")
	fs.IntVar(&stackDepth, "stack-depth", 64, "")
	fs.IntVar(&maxOutstanding, "max-outstanding", 1<<20, "")
	fs.IntVar(&top, "top", 10, "")
	fs.StringVar(&mode, "mode", "", "")
	fs.IntVar(&sample, "sample", 0, "")
	fs.IntVar(&hot, "hot-threshold", 64, "")
	var tags, pooltag, interval, httpAddr string
	var allowRemote bool
	fs.StringVar(&httpAddr, "http", "", "")
	fs.BoolVar(&allowRemote, "allow-remote", false, "")
	fs.StringVar(&interval, "interval", "", "")
	fs.StringVar(&tags, "tag", "", "")
	fs.StringVar(&pooltag, "pooltag", "", "")
	var stopLeftover bool
	fs.BoolVar(&stopLeftover, "stop-leftover", false, "")
	fs.BoolVar(&help, "help", false, "")
	fs.BoolVar(&help, "h", false, "")
	if err := fs.Parse(args); err != nil {
		return nil, flagError(err)
	}
	if help {
		fmt.Fprint(stdout, recordUsage)
		return nil, flag.ErrHelp
	}
	o := &recordOptions{output: output, top: top, pooltag: pooltag, http: httpAddr, stopLeftover: stopLeftover}
	if consumed := len(args) - fs.NArg(); consumed > 0 && args[consumed-1] == "--" {
		if fs.NArg() == 0 {
			return nil, usagef("-- needs a command after it: kmemprof record [options] -- CMD [ARGS...]")
		}
		o.command = fs.Args()
	} else if fs.NArg() > 0 {
		return nil, usagef("unexpected argument %q (options start with -; to trace a command, put it after --: kmemprof record -- CMD)", fs.Arg(0))
	}
	if follow && o.command == nil {
		return nil, usagef("--follow follows a command: kmemprof record --follow -- CMD [ARGS...]")
	}
	if follow && pid != "" {
		return nil, usagef("--follow and --pid both choose the processes to trace: give one")
	}
	o.bpf.Follow = follow
	switch nestedFrees {
	case "exact":
	case "lazy":
		o.bpf.LazyBackups = true
	default:
		return nil, usagef("bad --nested-frees %q: want exact or lazy", nestedFrees)
	}
	if httpAddr != "" {
		if err := checkHTTPAddr(httpAddr, allowRemote); err != nil {
			return nil, err
		}
		if output == stdoutName {
			return nil, usagef("--http serves the profile file: give -o FILE, not -o -")
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := checkPlatformFlags(set); err != nil {
		return nil, err
	}
	if tags != "" {
		for _, t := range strings.Split(tags, ",") {
			if t == "" || len(t) > 4 {
				return nil, usagef("bad --tag %q: pool tags are 1 to 4 characters", t)
			}
			o.tags = append(o.tags, t)
		}
		if len(o.tags) > 4 {
			return nil, usagef("--tag: at most 4 pool tags")
		}
	}
	var err error
	if o.duration, err = parseDuration(duration); err != nil || o.duration <= 0 {
		return nil, usagef("bad --duration %q: want a positive duration such as 30s or 2m", duration)
	}
	if o.command != nil && !set["duration"] && !set["d"] {
		o.duration = 0 // until the command exits
	}
	if interval != "" {
		if o.interval, err = parseDuration(interval); err != nil || o.interval < 100*time.Millisecond {
			return nil, usagef("bad --interval %q: want a duration of at least 100ms, such as 5s", interval)
		}
		if o.duration > 0 && o.interval > o.duration/2 {
			return nil, usagef("--interval %s is more than half of --duration %s: growth needs at least two intervals", o.interval, o.duration)
		}
	}
	if o.minAge, err = parseDuration(minAge); err != nil || o.minAge < 0 {
		return nil, usagef("bad --min-age %q: want a duration such as 500ms or 2s", minAge)
	}
	if output == "" {
		return nil, usagef("--output needs a file name")
	}
	if st, err := os.Stat(output); err == nil && st.IsDir() {
		return nil, usagef("--output %s is a directory; give a file name", output)
	}
	if top < 0 {
		return nil, usagef("bad --top %d: want 0 or more", top)
	}
	if o.bpf.Kinds, err = bpf.ParseKinds(kinds); err != nil {
		return nil, usagef("bad --kinds: %v", err)
	}
	switch {
	case mode == "" && sample != 0:
		o.bpf.Tracking = bpf.TrackSample
	case mode == "":
		o.bpf.Tracking = bpf.TrackAdaptive
	default:
		if o.bpf.Tracking, err = bpf.ParseTracking(mode); err != nil {
			return nil, usagef("bad --mode: %v", err)
		}
	}
	if sample != 0 && o.bpf.Tracking != bpf.TrackSample {
		return nil, usagef("--sample goes with --mode sample, not --mode %s", o.bpf.Tracking)
	}
	if sample < 0 {
		return nil, usagef("bad --sample %d: want a rate of 1 or more", sample)
	}
	o.bpf.SampleEvery = sample
	if hot < 1 {
		return nil, usagef("bad --hot-threshold %d: want 1 or more", hot)
	}
	o.bpf.HotThreshold = hot
	if o.bpf.Mode, err = bpf.ParseMode(attach); err != nil {
		return nil, usagef("bad --attach: %v", err)
	}
	if pid != "" {
		p, err := strconv.ParseUint(pid, 10, 32)
		if err != nil || p == 0 {
			return nil, usagef("bad --pid %q: want a process id (a positive number)", pid)
		}
		if !processExists(uint32(p)) {
			return nil, usagef("--pid %d: no such process", p)
		}
		o.bpf.PID = uint32(p)
	}
	if cgrp != "" {
		st, err := os.Stat(cgrp)
		if err != nil || !st.IsDir() {
			return nil, usagef("--cgroup %s: not a cgroup directory", cgrp)
		}
		o.bpf.CgroupPath = cgrp
	}
	if memcg != "" {
		if err := checkMemcg(memcg); err != nil {
			return nil, err
		}
	}
	o.bpf.MemcgPath = memcg
	if caches != "" {
		for _, c := range strings.Split(caches, ",") {
			if c = strings.TrimSpace(c); c != "" {
				o.bpf.Caches = append(o.bpf.Caches, c)
			}
		}
		if len(o.bpf.Caches) > bpf.MaxCacheFilters {
			return nil, usagef("--cache: at most %d caches", bpf.MaxCacheFilters)
		}
		for _, c := range o.bpf.Caches {
			if len(c) >= 32 {
				return nil, usagef("--cache %q: slab cache names are shorter than 32 characters", c)
			}
		}
	}
	if o.bpf.MinSize, err = strconv.ParseUint(minSize, 10, 64); err != nil {
		return nil, usagef("bad --min-size %q: want a number of bytes", minSize)
	}
	if stackDepth < 1 || stackDepth > bpf.MaxStackDepth {
		return nil, usagef("bad --stack-depth %d: want 1 to %d", stackDepth, bpf.MaxStackDepth)
	}
	o.bpf.StackDepth = stackDepth
	if maxOutstanding < 1024 || maxOutstanding > 1<<26 {
		return nil, usagef("bad --max-outstanding %d: want 1024 to %d", maxOutstanding, 1<<26)
	}
	o.bpf.MaxOutstanding = maxOutstanding
	return o, nil
}

// parseDuration accepts Go durations ("30s", "1m30s") and plain numbers of
// seconds ("30", "0.5").
// Every subcommand's durations go through it: one syntax everywhere.
func parseDuration(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > float64(math.MaxInt64/int64(time.Second)) {
			return 0, fmt.Errorf("duration %q out of range", s)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	return time.ParseDuration(s)
}

func runRecord(args []string, stdout, stderr io.Writer) int {
	o, err := parseRecord(args, stdout)
	if err != nil {
		return report(stderr, "record", err)
	}
	if o.command != nil {
		// Checked before anything is attached or written.
		path, status, err := resolveCommand(o.command[0])
		if err != nil {
			fmt.Fprintf(stderr, "kmemprof record: %v\n", err)
			return status
		}
		o.commandPath = path
	}
	if err := checkOutput(o.output, stdout); err != nil {
		return report(stderr, "record", err)
	}
	if err := record(o, stdout, stderr); err != nil {
		return report(stderr, "record", err)
	}
	if o.command != nil && o.http == "" {
		return o.exitStatus
	}
	if o.http != "" {
		// A fresh context: a Ctrl-C that ended the capture must not also end
		// the web UI before it starts.
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		err := serveProfile(ctx, o.http, o.output, stderr, func(url string) {
			fmt.Fprintf(stderr, "serving %s at %s (Ctrl-C to stop)\n", o.output, url)
		})
		if err != nil {
			return report(stderr, "record", err)
		}
	}
	if o.command != nil {
		return o.exitStatus
	}
	return exitOK
}

// resolveCommand finds a command's executable as a shell would, or says
// why it cannot be run, with the exit status timeout(1) and shells use:
// 127 not found, 126 found but not runnable.
func resolveCommand(name string) (string, int, error) {
	path, err := exec.LookPath(name)
	if err == nil {
		return path, 0, nil
	}
	if errors.Is(err, exec.ErrNotFound) {
		return "", 127, fmt.Errorf("%s: command not found", name)
	}
	if st, serr := os.Stat(name); serr == nil {
		if st.IsDir() {
			return "", 126, fmt.Errorf("%s: is a directory", name)
		}
		return "", 126, fmt.Errorf("%s: not executable (permission denied)", name)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return "", 127, fmt.Errorf("%s: no such file", name)
	}
	return "", 126, fmt.Errorf("%s: %v", name, err)
}

// writeOutputs builds the profile from agg, writes it (0600, atomically),
// prints the summary (then more, when set) on stdout and says where the
// profile is on stderr.
func writeOutputs(o *recordOptions, agg *tracer.Aggregation, stdout, stderr io.Writer, more func(io.Writer) error) error {
	prof, err := agg.Profile()
	if err != nil {
		return err
	}
	if o.output == stdoutName {
		// The profile is stdout's: the summary and the rest go to stderr.
		if err := tracer.EncodeProfile(stdout, prof); err != nil {
			return fmt.Errorf("writing the profile to stdout: %w", err)
		}
		if o.top > 0 {
			if err := agg.WriteSummary(stderr, o.top); err != nil {
				return err
			}
			if more != nil {
				return more(stderr)
			}
			return nil
		}
		return agg.WriteLosses(stderr)
	}
	uid, gid, sudo := sudoUser(os.Getenv)
	if !sudo {
		uid, gid = -1, -1
	}
	old := keepPrevious(o.output)
	if err := tracer.WriteProfileOwned(o.output, prof, uid, gid); err != nil {
		return err
	}
	if old != "" {
		fmt.Fprintf(stderr, "kept the previous %s as %s\n", o.output, old)
	}
	if o.top > 0 {
		if err := agg.WriteSummary(stdout, o.top); err != nil {
			return err
		}
		if more != nil {
			if err := more(stdout); err != nil {
				return err
			}
		}
	} else if err := agg.WriteLosses(stderr); err != nil {
		// --top 0: no summary, but losses are never silent.
		return err
	}
	fmt.Fprintf(stderr, "wrote %s (%d samples)\n%s", o.output, len(prof.Sample), nextSteps(o.output))
	return nil
}

// stdoutName is the -o value that writes the profile to stdout.
const stdoutName = "-"

// checkOutput checks, before a capture or a conversion starts, that its
// profile can be written: a file that can be made in its directory, or
// stdout ("-") when it is not a terminal, which would show gzip bytes.
func checkOutput(path string, stdout io.Writer) error {
	if path != stdoutName {
		return tracer.CheckWritable(path)
	}
	if f, ok := stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return usagef("-o - writes the profile (gzip) to stdout, which is a terminal: redirect it (-o - > kmem.pb.gz) or give -o FILE")
	}
	return nil
}

// keepPrevious keeps a profile that the one about to be written at path
// would replace, as path.old (perf keeps perf.data.old): a hard link, so
// that path itself is still replaced atomically. It returns the name kept,
// or "" when there was none, or it could not be kept (the new profile is
// written all the same, as before).
func keepPrevious(path string) string {
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return ""
	}
	old := path + ".old"
	if err := os.Remove(old); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	if err := os.Link(path, old); err != nil {
		return ""
	}
	return old
}

// nextSteps is what to run next on a written profile: kmemprof serve first
// (no Go toolchain needed), as the user who ran sudo when under it, since the
// profile is theirs.
func nextSteps(path string) string {
	arg := path
	if strings.ContainsAny(arg, " \t'\"$`\\") {
		arg = "'" + strings.ReplaceAll(arg, "'", `'\''`) + "'"
	}
	self := "kmemprof"
	if exe, err := os.Executable(); err == nil && filepath.Base(exe) == "kmemprof" {
		if p, err := exec.LookPath("kmemprof"); err != nil || p != exe {
			self = exe
		}
	}
	return fmt.Sprintf("open it with: %s serve %s   (or: go tool pprof -http=127.0.0.1:8080 %s)\n", self, arg, arg)
}

// sudoUser is the user who ran kmemprof through sudo (SUDO_UID, SUDO_GID),
// when kmemprof runs as root on a Unix: the files it writes are given to
// them. ok is false otherwise, or when the variables do not parse.
func sudoUser(getenv func(string) string) (uid, gid int, ok bool) {
	if runtime.GOOS == "windows" || os.Geteuid() != 0 {
		return 0, 0, false
	}
	u, err1 := strconv.Atoi(getenv("SUDO_UID"))
	g, err2 := strconv.Atoi(getenv("SUDO_GID"))
	if err1 != nil || err2 != nil || u <= 0 || g < 0 {
		return 0, 0, false
	}
	return u, g, true
}

// progressLine returns a tracer.CaptureConfig.Progress that keeps one line
// up to date on stderr when it is a terminal (nil otherwise): elapsed and
// remaining time, events per second and, where the backend keeps them live,
// outstanding allocations and losses.
func progressLine(stderr io.Writer, d time.Duration) func(time.Duration, tracer.Stats, float64) {
	f, ok := stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return func(el time.Duration, st tracer.Stats, rate float64) {
		el = el.Round(time.Second)
		left := ""
		if d > 0 {
			left = fmt.Sprintf(", %s left", (d - el).Round(time.Second))
		}
		line := fmt.Sprintf("\r\033[K  %s elapsed%s  %s events/s", el, left, humanCount(rate))
		if st.Live {
			line += fmt.Sprintf("  %d outstanding  %d lost", st.Outstanding, st.Losses)
		}
		fmt.Fprint(stderr, line)
	}
}

// clearProgress erases the progress line, if stderr is a terminal.
func clearProgress(stderr io.Writer) {
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(stderr, "\r\033[K")
	}
}

func humanCount(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}
