package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kmemprof/kmemprof/bpf/bpftest"
)

var capNumbers = map[string]int{
	"CAP_DAC_READ_SEARCH": unix.CAP_DAC_READ_SEARCH,
	"CAP_SYS_RESOURCE":    unix.CAP_SYS_RESOURCE,
	"CAP_SYSLOG":          unix.CAP_SYSLOG,
	"CAP_PERFMON":         unix.CAP_PERFMON,
	"CAP_BPF":             unix.CAP_BPF,
}

func keepOnlyCaps(list string) {
	keep := map[int]bool{}
	for _, name := range strings.Split(list, ",") {
		n, ok := capNumbers[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown capability %q\n", name)
			os.Exit(2)
		}
		keep[n] = true
	}
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	last, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	for c := 0; c <= last; c++ {
		if !keep[c] {
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
				fmt.Fprintf(os.Stderr, "dropping capability %d: %v\n", c, err)
				os.Exit(2)
			}
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, keepCapsEnv+"=") {
			env = append(env, e)
		}
	}
	// Or another binary, the same arguments (the image's, in TestImage).
	exe, args := "/proc/self/exe", os.Args
	if p := os.Getenv(testExecEnv); p != "" {
		exe, args = p, append([]string{p}, os.Args[1:]...)
	}
	err = syscall.Exec(exe, args, env)
	fmt.Fprintln(os.Stderr, "re-executing:", err)
	os.Exit(2)
}

// deployCaps reads the capabilities the deployment files give the agent:
// the systemd unit's CapabilityBoundingSet and AmbientCapabilities, and the
// DaemonSet's capabilities.add. It fails the test when they differ.
func deployCaps(t *testing.T) []string {
	t.Helper()
	unit, err := os.ReadFile(filepath.Join("deploy", "kmemprof-agent.service"))
	if err != nil {
		t.Fatal(err)
	}
	ds, err := os.ReadFile(filepath.Join("deploy", "kmemprof-agent-daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	field := func(b []byte, re string) []string {
		m := regexp.MustCompile(re).FindSubmatch(b)
		if m == nil {
			t.Fatalf("no %s in the deployment files", re)
		}
		var out []string
		for _, f := range strings.FieldsFunc(string(m[1]), func(r rune) bool { return r == ' ' || r == ',' }) {
			if !strings.HasPrefix(f, "CAP_") {
				f = "CAP_" + f
			}
			out = append(out, f)
		}
		slices.Sort(out)
		return out
	}
	bounding := field(unit, `(?m)^CapabilityBoundingSet=(.*)$`)
	ambient := field(unit, `(?m)^AmbientCapabilities=(.*)$`)
	add := field(ds, `(?m)^\s*add: \[(.*)\]\s*$`)
	if !slices.Equal(bounding, ambient) || !slices.Equal(bounding, add) {
		t.Fatalf("the deployment files disagree: unit bounding set %v, ambient %v, DaemonSet %v", bounding, ambient, add)
	}
	return bounding
}

// boundingSet is this process's capability bounding set.
func boundingSet(t *testing.T) uint64 {
	t.Helper()
	have, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	var bnd uint64
	if m := regexp.MustCompile(`(?m)^CapBnd:\s*([0-9a-f]+)`).FindSubmatch(have); m != nil {
		bnd, _ = strconv.ParseUint(string(m[1]), 16, 64)
	}
	return bnd
}

// TestAgentDeployPrivileges runs the agent with exactly the capabilities
// the systemd unit and the DaemonSet give it (no_new_privs set, as both
// do): it watches, then captures (traces, names kernel frames) and pushes
// the leak. Without
// CAP_SYSLOG it stops with an error that names it.
func TestAgentDeployPrivileges(t *testing.T) {
	bpftest.Require(t)
	caps := deployCaps(t)
	// Capabilities this machine's own bounding set lacks (a container
	// without CAP_SYS_RESOURCE, say) cannot be kept.
	bnd := boundingSet(t)
	var kept []string
	for _, c := range caps {
		n, ok := capNumbers[c]
		if !ok {
			t.Fatalf("the deployment files give %s, which this test does not know", c)
		}
		if bnd&(1<<n) != 0 {
			kept = append(kept, c)
		} else {
			t.Logf("%s: not in this machine's bounding set, left out", c)
		}
	}

	t.Run("deployed", func(t *testing.T) {
		t.Setenv(keepCapsEnv, strings.Join(kept, ","))
		f := &fakePyroscope{}
		url := startFakePyroscope(t, f)
		// Watch mode, as deployed: it reads the kernel's counts, then a
		// steady leak triggers a capture (attach, kallsyms, detach).
		cmd, stderr := startAgent(t, watchArgs(url)...)
		if eff := capEff(t, cmd.Process.Pid); eff&(1<<unix.CAP_SYS_ADMIN) != 0 {
			t.Fatalf("the agent kept CAP_SYS_ADMIN (CapEff %#x): the test does not test the deployed privileges", eff)
		}
		leaker := bpftest.StartSteadyLeaker(t, 12000, 30*time.Second)
		for deadline := time.Now().Add(60 * time.Second); !strings.Contains(stderr.String(), "capture done"); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) || strings.Contains(stderr.String(), "capture failed") {
				t.Fatalf("with the deployed capabilities, no capture: %s", stderr.String())
			}
		}
		if leak, _ := waitCapturedLeak(t, f, leaker.PID); leak < 100 {
			t.Errorf("with the deployed capabilities the captured profile holds %d of the leaker's eventfd objects under do_eventfd, want hundreds", leak)
		}
		stopAgent(t, cmd, stderr)
	})

	t.Run("without CAP_SYSLOG", func(t *testing.T) {
		var less []string
		for _, c := range kept {
			if c != "CAP_SYSLOG" {
				less = append(less, c)
			}
		}
		t.Setenv(keepCapsEnv, strings.Join(less, ","))
		cmd := kmemprofCmd("agent", "--metrics", "127.0.0.1:0")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "CAP_SYSLOG") {
			t.Errorf("agent without CAP_SYSLOG: %v, %q; want a non-zero exit naming CAP_SYSLOG", err, out)
		}
	})
}

// capEff reads a process's effective capabilities.
func capEff(t *testing.T, pid int) uint64 {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatal(err)
		}
		if m := regexp.MustCompile(`(?m)^CapEff:\s*([0-9a-f]+)`).FindSubmatch(b); m != nil {
			v, _ := strconv.ParseUint(string(m[1]), 16, 64)
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("no CapEff for %d", pid)
		}
	}
}
