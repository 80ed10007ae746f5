package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/kmemprof/kmemprof/bpf/bpftest"
)

// mainEnv makes the test binary run kmemprof's main instead of the tests, so
// that tests can start kmemprof as a real process (signals, exit codes, uid).
const mainEnv = "KMEMPROF_TEST_RUN_MAIN"

// keepCapsEnv makes the test binary, run as kmemprof's main, drop every
// capability but the ones it lists (comma-separated, as CAP_BPF) from its
// bounding set, set no_new_privs and execute itself again: it then runs as
// root with only those capabilities, as under the systemd unit's
// CapabilityBoundingSet or a container's capabilities.add (Linux only).
const keepCapsEnv = "KMEMPROF_TEST_KEEP_CAPS"

// testExecEnv, with keepCapsEnv, makes the test binary execute that binary
// instead of itself once the capabilities are dropped.
const testExecEnv = "KMEMPROF_TEST_EXEC"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		if caps := os.Getenv(keepCapsEnv); caps != "" {
			keepOnlyCaps(caps) // re-executes itself without the others
		}
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	bpftest.HelperMain()
	os.Exit(m.Run())
}

func runInProcess(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

func TestHelp(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"main", []string{"--help"}, []string{"record", "go tool pprof", "kmemprof record --help"}},
		{"help record", []string{"help", "record"}, []string{"--duration", "--kinds"}},
		{"report", []string{"report", "--help"}, []string{"--top", "kmemprof report kmem.pb.gz"}},
		{"main lists report", []string{"help"}, []string{"report    print the summary"}},
		{"record", []string{"record", "--help"}, []string{
			"--duration", "--output", "--min-age", "--kinds", "--pid", "--cgroup", "--cache",
			"--min-size", "--attach", "--stack-depth", "--max-outstanding", "--top",
			"--mode", "--sample", "--hot-threshold",
			"-tagfocus=cache=", "inuse_objects", "CAP_BPF",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runInProcess(tc.args...)
			if code != exitOK {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("help does not mention %q", w)
				}
			}
		})
	}
}

func TestNoArgsPrintsUsage(t *testing.T) {
	code, _, errOut := runInProcess()
	if code != exitUsage || !strings.Contains(errOut, "Commands:") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "k.pb.gz")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown command", []string{"recrod"}, exitUsage, `unknown command "recrod"`},
		{"unknown flag", []string{"record", "--durration", "5s", "-o", out}, exitUsage, "unknown option --durration\nRun 'kmemprof record --help'"},
		{"unknown short flag", []string{"record", "-q", "-o", out}, exitUsage, "unknown option -q"},
		{"flag without value", []string{"record", "-o", out, "--top"}, exitUsage, "option --top needs a value"},
		{"flag type named as in help", []string{"record", "-top", "x", "-o", out}, exitUsage, `bad value "x" for --top: not a number`},
		{"bool flag value", []string{"record", "--follow=maybe", "-o", out}, exitUsage, `bad value "maybe" for --follow: want true or false`},
		{"report without file", []string{"report"}, exitUsage, "no profile given"},
		{"report two files", []string{"report", out, out}, exitUsage, "one profile at a time"},
		{"report bad top", []string{"report", "--top", "0", out}, exitUsage, "bad --top 0"},
		{"report missing file", []string{"report", filepath.Join(dir, "none.pb.gz")}, exitError, "no such file"},
		{"version with argument", []string{"version", "extra"}, exitUsage, `takes no arguments, got "extra"`},
		{"bad -p", []string{"record", "-p", "abc", "-o", out}, exitUsage, `bad --pid "abc"`},
		{"nan duration", []string{"record", "-d", "NaN", "-o", out}, exitUsage, `bad --duration "NaN"`},
		{"huge duration", []string{"record", "-d", "1e300", "-o", out}, exitUsage, `bad --duration "1e300"`},
		{"bad duration", []string{"record", "-d", "abc", "-o", out}, exitUsage, `bad --duration "abc"`},
		{"zero duration", []string{"record", "-d", "0", "-o", out}, exitUsage, "bad --duration"},
		{"negative duration", []string{"record", "-d", "-5s", "-o", out}, exitUsage, "bad --duration"},
		{"bad min-age", []string{"record", "--min-age", "old", "-o", out}, exitUsage, "bad --min-age"},
		{"unwritable output", []string{"record", "-d", "1s", "-o", "/nonexistent/dir/k.pb.gz"}, exitError, "/nonexistent/dir"},
		{"output is a directory", []string{"record", "-d", "1s", "-o", dir}, exitUsage, "is a directory"},
		{"bad kinds", []string{"record", "--kinds", "slab,heap", "-o", out}, exitUsage, `unknown allocation kind "heap"`},
		{"empty kinds", []string{"record", "--kinds", "", "-o", out}, exitUsage, "no allocation kind"},
		{"bad pid", []string{"record", "--pid", "abc", "-o", out}, exitUsage, `bad --pid "abc"`},
		{"zero pid", []string{"record", "--pid", "0", "-o", out}, exitUsage, "bad --pid"},
		{"missing pid", []string{"record", "--pid", "4000000", "-o", out}, exitUsage, "no such process"},
		{"bad attach", []string{"record", "--attach", "fexit", "-o", out}, exitUsage, `unknown attach mode "fexit"`},
		{"bad stack depth", []string{"record", "--stack-depth", "500", "-o", out}, exitUsage, "bad --stack-depth"},
		{"too many caches", []string{"record", "--cache", "a,b,c,d,e", "-o", out}, exitUsage, "at most 4"},
		{"bad cgroup", []string{"record", "--cgroup", "/nonexistent/cg", "-o", out}, exitUsage, "not a cgroup directory"},
		{"bad memcg on linux", []string{"record", "--memcg", "/nonexistent/memcg", "-o", out}, exitUsage, "--memcg /nonexistent/memcg"},
		{"bad min-size", []string{"record", "--min-size", "1k", "-o", out}, exitUsage, "bad --min-size"},
		{"bad mode", []string{"record", "--mode", "fast", "-o", out}, exitUsage, `unknown mode "fast"`},
		{"sample with full", []string{"record", "--mode", "full", "--sample", "8", "-o", out}, exitUsage, "--sample goes with --mode sample"},
		{"negative sample", []string{"record", "--sample", "-3", "-o", out}, exitUsage, "bad --sample"},
		{"bad hot threshold", []string{"record", "--hot-threshold", "0", "-o", out}, exitUsage, "bad --hot-threshold"},
		{"windows flag on linux", []string{"record", "--tag", "Leak", "-o", out}, exitUsage, "--tag is for Windows pool tags"},
		{"stop-leftover on linux", []string{"record", "--stop-leftover", "-o", out}, exitUsage, "--stop-leftover stops a Windows pool tracing session"},
		{"agent bad trigger growth", []string{"agent", "--metrics", "127.0.0.1:0", "--trigger-growth", "32k"}, exitUsage, "bad --trigger-growth"},
		{"agent bad trigger intervals", []string{"agent", "--metrics", "127.0.0.1:0", "--trigger-intervals", "0"}, exitUsage, "bad --trigger-intervals"},
		{"agent bad capture", []string{"agent", "--metrics", "127.0.0.1:0", "--capture", "500ms"}, exitUsage, "bad --capture"},
		{"agent bad backoff", []string{"agent", "--metrics", "127.0.0.1:0", "--backoff", "soon"}, exitUsage, "bad --backoff"},
		{"selftest bad n", []string{"selftest", "-n", "5"}, exitUsage, "bad -n 5"},
		{"selftest bad attach", []string{"selftest", "--attach", "fexit"}, exitUsage, "unknown attach mode"},
		{"top bad sort", []string{"top", "--sort", "name"}, exitUsage, `bad --sort "name"`},
		{"top bad interval", []string{"top", "--interval", "1ms"}, exitUsage, "bad --interval"},
		{"record bad interval", []string{"record", "-d", "10s", "--interval", "6s", "-o", out}, exitUsage, "more than half of --duration"},
		{"stray argument", []string{"record", "-o", out, "30s"}, exitUsage, `unexpected argument "30s"`},
		{"command without --", []string{"record", "-o", out, "ls", "-l"}, exitUsage, "put it after --"},
		{"-- without command", []string{"record", "-o", out, "--"}, exitUsage, "-- needs a command"},
		{"follow without command", []string{"record", "--follow", "-o", out}, exitUsage, "--follow follows a command"},
		{"bad nested-frees", []string{"record", "--nested-frees", "none", "-o", out}, exitUsage, "bad --nested-frees"},
		{"follow with pid", []string{"record", "--follow", "--pid", "1", "-o", out, "--", "true"}, exitUsage, "--follow and --pid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if strings.Contains(tc.name, "linux") && runtime.GOOS != "linux" {
				t.Skip("Linux flag rules")
			}
			code, _, errOut := runInProcess(tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.code, errOut)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q does not contain %q", errOut, tc.want)
			}
			if !strings.HasPrefix(errOut, "kmemprof") {
				t.Errorf("stderr %q does not start with the program name", errOut)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("%s was written", out)
			}
			left, _ := os.ReadDir(dir)
			if len(left) != 0 {
				t.Errorf("files left in the output directory: %v", left)
			}
		})
	}
}

// TestHelpOfHelp: help of help, in every spelling, is the main page, not
// a recursion to the stack limit; help of a command is its page.
func TestHelpOfHelp(t *testing.T) {
	for _, args := range [][]string{
		{"help", "help"}, {"help", "-h"}, {"-h", "-h"}, {"--help", "--help"}, {"help", "--help"}, {"-help", "help"},
	} {
		code, out, errOut := runInProcess(args...)
		if code != exitOK || !strings.Contains(out, "Commands:") || errOut != "" {
			t.Errorf("%q: exit %d, stdout %d bytes, stderr %q", args, code, len(out), errOut)
		}
	}
	for _, args := range [][]string{{"help", "version"}, {"version", "--help"}} {
		code, out, _ := runInProcess(args...)
		if code != exitOK || !strings.Contains(out, "Usage: kmemprof version") {
			t.Errorf("%q: exit %d, stdout %q", args, code, out)
		}
	}
	for _, args := range [][]string{{"version"}, {"--version"}, {"-V"}} {
		code, out, _ := runInProcess(args...)
		if code != exitOK || !strings.HasPrefix(out, "kmemprof ") {
			t.Errorf("%q: exit %d, stdout %q", args, code, out)
		}
	}
}

// TestOneDurationSyntax: every subcommand takes bare seconds and Go
// durations alike (the agent's in TestAgentIntervalSeconds).
func TestOneDurationSyntax(t *testing.T) {
	o, err := parseConvert([]string{"--min-age", "2", "-o", filepath.Join(t.TempDir(), "k.pb.gz"), "x.etl"}, &bytes.Buffer{})
	if err != nil || o.rec.minAge.String() != "2s" {
		t.Errorf("convert --min-age 2: %v", err)
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]string{"30": "30s", "0.5": "500ms", "2m": "2m0s", "1m30s": "1m30s"} {
		d, err := parseDuration(in)
		if err != nil || d.String() != want {
			t.Errorf("parseDuration(%q) = %v, %v; want %s", in, d, err, want)
		}
	}
}

// TestNoBPFAtStart: no package linked into kmemprof touches the kernel's BPF
// at init (cilium/ebpf's rlimit package makes a bpf() call in its init, so
// every command, even version, would): the memlock limit is lifted where
// programs are loaded (bpf.removeMemlock).
func TestNoBPFAtStart(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH")
	}
	for _, goos := range []string{"linux", "windows"} {
		cmd := exec.Command(goBin, "list", "-deps", ".")
		cmd.Env = append(os.Environ(), "GOOS="+goos)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list -deps (GOOS=%s): %v", goos, err)
		}
		if strings.Contains(string(out), "github.com/cilium/ebpf/rlimit\n") {
			t.Errorf("GOOS=%s: kmemprof links github.com/cilium/ebpf/rlimit, whose init calls bpf()", goos)
		}
	}
}
