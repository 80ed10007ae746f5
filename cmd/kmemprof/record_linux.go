package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kmemprof/kmemprof/bpf"
	"github.com/kmemprof/kmemprof/symbolize"
	"github.com/kmemprof/kmemprof/symbolize/host"
	"github.com/kmemprof/kmemprof/tracer"
)

// Capability bits (linux/capability.h).
const (
	capSysAdmin = 21
	capSyslog   = 34
	capPerfmon  = 38
	capBPF      = 39
)

// checkPrivileges returns an error naming what is missing when this process
// cannot load tracing BPF programs or read kernel symbol addresses.
func checkPrivileges() error {
	eff, err := effectiveCaps()
	if err != nil {
		if os.Geteuid() == 0 {
			return nil
		}
		return fmt.Errorf("kmemprof needs root (reading capabilities: %v)", err)
	}
	has := func(c uint) bool { return eff&(1<<c) != 0 }
	var missing []string
	if !has(capSysAdmin) {
		if !has(capBPF) {
			missing = append(missing, "CAP_BPF")
		}
		if !has(capPerfmon) {
			missing = append(missing, "CAP_PERFMON")
		}
		if !has(capSyslog) {
			missing = append(missing, "CAP_SYSLOG")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("permission denied: tracing kernel allocations needs root, or the capabilities %s "+
			"(missing: %s; CAP_SYS_ADMIN covers them): run with sudo, or "+
			"setcap cap_bpf,cap_perfmon,cap_syslog+ep on the kmemprof binary",
			"CAP_BPF, CAP_PERFMON and CAP_SYSLOG", strings.Join(missing, ", "))
	}
	return nil
}

// effectiveCaps reads CapEff from /proc/self/status.
func effectiveCaps() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("no CapEff line in /proc/self/status")
}

// checkKallsyms fails early when the kernel hides symbol addresses from us
// (kernel.kptr_restrict), which would leave every frame unnamed.
func checkKallsyms() error {
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		return fmt.Errorf("reading /proc/kallsyms: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for i := 0; i < 64 && sc.Scan(); i++ {
		if a, _, ok := strings.Cut(sc.Text(), " "); ok && strings.Trim(a, "0") != "" {
			return nil
		}
	}
	return fmt.Errorf("reading /proc/kallsyms: %w: %s", symbolize.ErrAddressesHidden, addressesHiddenFix(readKptrRestrict(), os.Geteuid() == 0))
}

// readKptrRestrict is kernel.kptr_restrict, or -1 when it cannot be read.
func readKptrRestrict() int {
	b, err := os.ReadFile("/proc/sys/kernel/kptr_restrict")
	if err != nil {
		return -1
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1
	}
	return v
}

// addressesHiddenFix says what shows kernel addresses, by kptr_restrict:
// 2 hides them from everyone, root included; 1 from whoever lacks
// CAP_SYSLOG.
func addressesHiddenFix(kptrRestrict int, root bool) string {
	switch {
	case kptrRestrict >= 2:
		return "kernel.kptr_restrict is 2, which hides kernel addresses from every user, root included: " +
			"'sysctl kernel.kptr_restrict=1' shows them to root and CAP_SYSLOG only (kmemprof needs them to name stack frames)"
	case root:
		return "running as root, but without CAP_SYSLOG (a container or a capability bounding set drops it): add CAP_SYSLOG"
	}
	return "run as root, or with CAP_SYSLOG (kernel.kptr_restrict hides kernel addresses from other users)"
}

// kallsymsSymbolizer adapts symbolize.Kallsyms to tracer.Symbolizer.
type kallsymsSymbolizer struct{ k *symbolize.Kallsyms }

func (s kallsymsSymbolizer) Lookup(pc uint64) (tracer.Symbol, bool) {
	sym, _, ok := s.k.Lookup(pc)
	if !ok {
		return tracer.Symbol{}, false
	}
	return tracer.Symbol{Name: sym.Name, Start: sym.Start, Module: sym.Module}, true
}

func record(o *recordOptions, stdout, stderr io.Writer) error {
	if err := checkPrivileges(); err != nil {
		return err
	}
	if err := checkKallsyms(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	tr, names, err := openTracer(o.bpf)
	if err != nil {
		return err
	}
	defer tr.Close()
	// The system's own slab accounting, to show beside what was tracked;
	// read once kmemprof's maps exist, so that they are not in the deltas.
	sysStart, sysErr := host.ReadSystemView()
	if sysErr != nil {
		fmt.Fprintf(stderr, "note: %v\n", sysErr)
	}

	how := "for " + o.duration.String()
	if o.command != nil {
		who := "the whole system"
		if o.bpf.Follow {
			who = "its process tree"
		}
		how = fmt.Sprintf("while %s runs (%s)", o.command[0], who)
		if o.duration > 0 {
			how += ", at most " + o.duration.String()
		}
	}
	fmt.Fprintf(stderr, "tracing %s via %s (attached in %s) %s (Ctrl-C to stop early)\n",
		strings.Join(tr.Hooks(), ","), tr.Mode(), roundDuration(tr.AttachTime()), how)
	fmt.Fprintf(stderr, "%s\n", tr.Choice())
	for _, n := range tr.Notes() {
		fmt.Fprintf(stderr, "note: %s\n", n)
	}

	var child *command
	var childDone <-chan struct{}
	if o.command != nil {
		if child, err = startCommand(o.commandPath, o.command); err != nil {
			return err
		}
		if o.bpf.Follow {
			if err := tr.Follow(child.pid()); err != nil {
				child.abort()
				return err
			}
		}
		if err := child.release(); err != nil {
			child.abort()
			return fmt.Errorf("starting %s: %w", o.command[0], err)
		}
		childDone = child.done
		// Whatever ends the capture, kmemprof exits with the command's
		// status, once the command has ended.
		defer func() { o.exitStatus = child.finish(5*time.Second, stderr) }()
	}

	out, err := captureAggregate(ctx, tr, names, sysStart, sysErr, tracer.CaptureConfig{
		Duration: o.duration,
		Done:     childDone,
		Interval: o.interval,
		Progress: progressLine(stderr, o.duration),
	}, o.minAge, func() { clearProgress(stderr) })
	if err != nil {
		return err
	}
	for _, n := range out.res.Notes {
		fmt.Fprintf(stderr, "note: %s\n", n)
	}
	if out.res.Interrupted {
		fmt.Fprintln(stderr, "interrupted: writing what was captured")
	}
	agg, sysEnd, trackedBytes := out.agg, out.sysEnd, out.trackedBytes
	return writeOutputs(o, agg, stdout, stderr, func(w io.Writer) error {
		fmt.Fprintln(w)
		return tracer.WriteReport(w, host.SystemViewReport(sysStart, sysEnd, trackedBytes))
	})
}

// captured is a capture, aggregated: what record writes and the agent's
// watch mode pushes.
type captured struct {
	agg          *tracer.Aggregation
	res          *tracer.CaptureResult
	sysEnd       host.SystemView
	trackedBytes map[string]uint64 // by cache, at the self-check (nil: none)
}

// captureAggregate runs a capture on an attached tracer (cc, with its
// BeforeStop set here), then aggregates what it saw: the self-check made
// while the programs still run, kallsyms read while they are attached, the
// host's cgroup names, the growth series when cc.Interval is set, and the
// kernel's view from sysStart (sysErr: not read) to the end. done, when set,
// runs as soon as the capture has ended.
func captureAggregate(ctx context.Context, tr *bpf.Tracer, names *hostNames, sysStart host.SystemView, sysErr error,
	cc tracer.CaptureConfig, minAge time.Duration, done func()) (*captured, error) {
	// The self-check runs as the capture ends, programs still attached: what
	// is tracked against the kernel's counts at that instant, which also
	// end the system view.
	var check *selfCheckResult
	var syms *symbolize.Kallsyms
	var symsErr error
	var startView *host.SystemView
	if sysErr == nil {
		startView = &sysStart
	}
	cc.BeforeStop = func() (err error) {
		check, err = selfCheck(tr, startView)
		// kallsyms is read while the programs are attached (after the
		// self-check, which reads the kernel's counts at the end):
		// their trampolines' symbols leave it at detach, and a stack
		// that crossed one (a slab's pages, allocated under a hooked
		// kmem_cache_alloc) would name the program loaded beside it.
		syms, symsErr = symbolize.LoadKallsyms()
		return err
	}
	res, err := tracer.Capture(ctx, tr, cc)
	if done != nil {
		done()
	}
	if err != nil {
		return nil, err
	}
	snap := res.Snapshot
	// Read after the programs were loaded (in BeforeStop, or now if that
	// did not run), so that their JIT symbols are in it and the trimming of
	// tracing frames can name them.
	if syms == nil && symsErr == nil {
		syms, symsErr = symbolize.LoadKallsyms()
	}
	if symsErr != nil {
		return nil, symsErr
	}
	// The system view ends where the self-check read the kernel's counts,
	// so that its TRACKED column is from the same instant; without a
	// self-check it ends now, and its TRACKED cells are "-".
	out := &captured{res: res}
	if check != nil {
		check.check.Apply(snap)
		out.sysEnd, out.trackedBytes = check.end, check.trackedBytes
	} else {
		out.sysEnd, _ = host.ReadSystemView()
	}
	cg, err := names.annotate(tr, snap)
	if err != nil {
		return nil, err
	}
	cgroupPath := func(id uint64) string {
		// Allocations of cgroups removed before the end are marked: the
		// memcg leak of BACKGROUND.md is slab held by dead containers.
		p := cg.Path(id)
		if cg.Dead(id) {
			if p == "" {
				return "dead:" + strconv.FormatUint(id, 10)
			}
			return p + " (deleted)"
		}
		return p
	}
	opts := tracer.Options{MinAge: minAge, CgroupPath: cgroupPath, GFPName: host.KernelGFPNamer().Name, Container: host.Container}
	if res.Series != nil {
		opts.Growth = res.Series.Growth()
		snap.Meta.Comments = append(snap.Meta.Comments, fmt.Sprintf("growth: %d measurements every %s", len(res.Series.Points), cc.Interval))
	}
	agg, err := tracer.Aggregate(snap, kallsymsSymbolizer{syms}, opts)
	if err != nil {
		return nil, err
	}
	agg.Meta.Comments = append(agg.Meta.Comments, host.SystemViewComments(sysStart, out.sysEnd)...)
	out.agg = agg
	return out, nil
}

// roundDuration rounds a short duration for people: 4.2s, 35ms.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(time.Second)
	case d >= time.Second:
		return d.Round(100 * time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Microsecond)
}
