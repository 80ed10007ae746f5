package main

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kmemprof/kmemprof/bpf/bpftest"
)

// tmuxSession runs a command in a detached tmux session of a known size.
type tmuxSession struct {
	t    *testing.T
	name string
}

func startTmux(t *testing.T, command string) *tmuxSession {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		if os.Getenv(bpftest.RequireEnv) == "1" {
			t.Fatal("tmux is not installed (CI installs it)")
		}
		t.Skip("tmux is not installed")
	}
	s := &tmuxSession{t: t, name: fmt.Sprintf("kmemprof-test-%d", os.Getpid())}
	out, err := exec.Command("tmux", "new-session", "-d", "-s", s.name, "-x", "160", "-y", "45", command).CombinedOutput()
	if err != nil {
		t.Fatalf("tmux new-session: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("tmux", "kill-session", "-t", s.name).Run() })
	return s
}

func (s *tmuxSession) screen() string {
	out, _ := exec.Command("tmux", "capture-pane", "-p", "-t", s.name).Output()
	return string(out)
}

func (s *tmuxSession) keys(k string) {
	if out, err := exec.Command("tmux", "send-keys", "-t", s.name, k).CombinedOutput(); err != nil {
		s.t.Fatalf("tmux send-keys %s: %v: %s", k, err, out)
	}
}

// waitFor polls the screen until ok holds, for up to d.
func (s *tmuxSession) waitFor(d time.Duration, what string, ok func(string) bool) string {
	s.t.Helper()
	deadline := time.Now().Add(d)
	for {
		sc := s.screen()
		if ok(sc) {
			return sc
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("screen never showed %s:\n%s", what, sc)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *tmuxSession) alive() bool {
	return exec.Command("tmux", "has-session", "-t", s.name).Run() == nil
}

// firstRow returns the first data row after the CACHE header.
func firstRow(screen string) string {
	lines := strings.Split(screen, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "CACHE") && i+1 < len(lines) {
			return lines[i+1]
		}
	}
	return ""
}

// TestTopUnderTmux drives `kmemprof top` on a real terminal: the rows and
// sort keys work, and the cache a child leaks into rises to the top of the
// diff sort.
func TestTopUnderTmux(t *testing.T) {
	bpftest.Require(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	s := startTmux(t, fmt.Sprintf("env %s=1 %s top --interval 300ms -n 12", mainEnv, exe))
	s.waitFor(15*time.Second, "the header", func(sc string) bool {
		return strings.Contains(sc, "kmemprof top") && strings.Contains(sc, "sort: diff")
	})
	leaker := bpftest.StartSteadyLeaker(t, 6000, time.Second)
	leaker.Wait(t, "held")

	s.keys("b")
	s.waitFor(5*time.Second, "sort: bytes", func(sc string) bool { return strings.Contains(sc, "sort: bytes") })
	s.keys("a")
	s.waitFor(5*time.Second, "sort: allocs", func(sc string) bool { return strings.Contains(sc, "sort: allocs") })
	s.keys("d")
	leakCaches := []string{"filp", "dentry", "lsm_file_cache", "kmalloc-64", "kmalloc-cg-64"}
	sc := s.waitFor(10*time.Second, "a leaking cache on top of the diff sort", func(sc string) bool {
		if !strings.Contains(sc, "sort: diff") {
			return false
		}
		f := strings.Fields(firstRow(sc))
		if len(f) < 4 {
			return false
		}
		for _, c := range leakCaches {
			if f[0] == c {
				diff := f[3]
				return len(diff) >= 4 // thousands outstanding
			}
		}
		return false
	})
	if !strings.Contains(sc, "ALLOCS") || !strings.Contains(sc, "GROWTH/s") {
		t.Errorf("columns missing:\n%s", sc)
	}
	s.keys("q")
	deadline := time.Now().Add(10 * time.Second)
	for s.alive() {
		if time.Now().After(deadline) {
			t.Fatalf("top did not quit on q:\n%s", s.screen())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestTopPlain: without a terminal, top prints plain tables and stops at --duration.
func TestTopPlain(t *testing.T) {
	bpftest.Require(t)
	out, err := kmemprofCmd("top", "-d", "1500ms", "--interval", "500ms", "-n", "5").CombinedOutput()
	if err != nil {
		t.Fatalf("top: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "\033[") {
		t.Errorf("escape sequences in plain output:\n%q", out)
	}
	if n := strings.Count(string(out), "CACHE "); n < 2 {
		t.Errorf("%d tables printed in 1.5 s at 500 ms, want at least 2:\n%s", n, out)
	}
	// A log of tables: each header has the wall-clock time; the cache
	// column is as wide as the names, merged caches' notes end the row.
	if !regexp.MustCompile(`kmemprof top  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d  `).Match(out) {
		t.Errorf("no wall-clock time in the plain tables' headers:\n%s", out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "CACHE") && strings.Index(l, "ALLOCS") > 60 {
			t.Errorf("the cache column is padded to %d characters: %q", strings.Index(l, "ALLOCS"), l)
		}
	}
}
