package bpf

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Kretprobes and the drops the kernel counts for kprobes.
//
// A kretprobe runs its program at the function's return only where it
// could take one of maxactive instances at the function's entry; calls
// beyond that are not seen (the kernel counts them in the kretprobe's
// nmissed). The kernel's default, max(10, 2 × CPUs), is too few for the
// allocator functions, whose callers sleep in them (reclaim, cond_resched)
// by the dozen on a busy machine: kmemprof asks for retprobeMaxActive
// instances, which only kretprobes made through tracefs can be given.
// Through tracefs the kernel also reports every kprobe's drops in
// kprobe_profile, on every kernel; for kprobes made through the perf PMU,
// the link's info carries them from Linux 6.7 only.

// retprobeMaxActive is how many calls of one allocator function a
// kretprobe follows at once: 64 per possible CPU, from 256 to the kernel's
// limit (KRETPROBE_MAXACTIVE_MAX, 4096).
func retprobeMaxActive() int {
	return min(max(64*possibleCPUs(), 256), 4096)
}

// kprobeGroupPrefix is the prefix of the tracefs groups of this process's
// kprobes: its own, so that kprobe_profile's lines of another kmemprof are
// not counted here.
func kprobeGroupPrefix() string {
	return "kmemprof_" + strconv.Itoa(os.Getpid())
}

// tracefsDir returns the tracefs mount that has kprobe_events, or "".
func tracefsDir() string {
	for _, dir := range tracefsDirs {
		if _, err := os.Stat(filepath.Join(dir, "kprobe_events")); err == nil {
			return dir
		}
	}
	return ""
}

// makeKretprobe attaches a kretprobe program to fn, made through tracefs
// with retprobeMaxActive instances where tracefs is mounted
// (viaTracefs), else through the perf PMU with the kernel's default.
func makeKretprobe(fn string, prog *ebpf.Program) (l link.Link, viaTracefs bool, err error) {
	if tracefsDir() != "" {
		l, err = link.Kretprobe(fn, prog, &link.KprobeOptions{RetprobeMaxActive: retprobeMaxActive(), TraceFSPrefix: kprobeGroupPrefix()})
		if err == nil {
			return l, true, nil
		}
	}
	l, err2 := link.Kretprobe(fn, prog, nil)
	if err2 != nil {
		if err != nil {
			return nil, false, fmt.Errorf("%w (through tracefs: %v)", err2, err)
		}
		return nil, false, err2
	}
	return l, false, nil
}

// readKprobeMisses sums the drops kprobe_profile reports for the kprobes of
// the tracefs groups whose names start with prefix + "_": the calls the
// kernel did not run their handlers for (another kprobe's handler was
// running on that CPU) and, for kretprobes, the calls it found no free
// instance for (maxactive). It also returns how many such kprobes it found.
func readKprobeMisses(prefix string) (misses uint64, probes int, err error) {
	dir := tracefsDir()
	if dir == "" {
		return 0, 0, fmt.Errorf("tracefs is not mounted")
	}
	ev, err := os.Open(filepath.Join(dir, "kprobe_events"))
	if err != nil {
		return 0, 0, err
	}
	defer ev.Close()
	prof, err := os.Open(filepath.Join(dir, "kprobe_profile"))
	if err != nil {
		return 0, 0, err
	}
	defer prof.Close()
	return kprobeMisses(ev, prof, prefix)
}

// kprobeMisses reads kprobe_events and kprobe_profile, which list the same
// kprobes in the same order (the kernel's list of dynamic events): the
// first gives each one's group ("r256:group/event symbol"), the second its
// hits and misses ("  event  hits  misses").
func kprobeMisses(events, profile io.Reader, prefix string) (misses uint64, probes int, err error) {
	var ours []bool
	sc := bufio.NewScanner(events)
	for sc.Scan() {
		def, _, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		if def == "" {
			continue
		}
		_, name, _ := strings.Cut(def, ":")
		group, _, _ := strings.Cut(name, "/")
		ours = append(ours, strings.HasPrefix(group, prefix+"_"))
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("reading kprobe_events: %w", err)
	}
	sc = bufio.NewScanner(profile)
	i := 0
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 3 {
			continue
		}
		if i >= len(ours) {
			return 0, 0, fmt.Errorf("kprobe_profile lists more kprobes than kprobe_events (a kprobe was added meanwhile)")
		}
		if ours[i] {
			n, err := strconv.ParseUint(fs[len(fs)-1], 10, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("kprobe_profile: %q: %w", sc.Text(), err)
			}
			misses += n
			probes++
		}
		i++
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("reading kprobe_profile: %w", err)
	}
	if i != len(ours) {
		return 0, 0, fmt.Errorf("kprobe_profile lists %d kprobes, kprobe_events %d (one was added or removed meanwhile)", i, len(ours))
	}
	return misses, probes, nil
}
