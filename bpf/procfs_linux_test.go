package bpf

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/kmemprof/kmemprof/bpf/bpftest"
)

func TestCgroupPathsOfPID(t *testing.T) {
	paths, err := CgroupPathsOfPID(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no cgroups for this process")
	}
	for c, p := range paths {
		if !strings.HasPrefix(p, "/") {
			t.Errorf("controller %q: path %q is not absolute", c, p)
		}
	}
	if Cgroup2Mount() != "" {
		if _, ok := paths[CgroupV2]; !ok {
			t.Errorf("cgroup2 is mounted but %v has no v2 path", paths)
		}
	}
	t.Logf("cgroups of this process: %v", paths)

	t.Run("exited", func(t *testing.T) {
		// Pids wrap below 2^22; this one is never in use.
		_, err := CgroupPathsOfPID(1 << 30)
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "/proc/1073741824/cgroup") {
			t.Errorf("error = %v, want one wrapping fs.ErrNotExist that names the file", err)
		}
	})
}

func TestCgroupResolverDead(t *testing.T) {
	bpftest.Require(t)
	abs, rel := testCgroup(t)
	var st syscall.Stat_t
	if err := syscall.Stat(abs, &st); err != nil {
		t.Fatal(err)
	}
	id := uint64(st.Ino)

	r := NewCgroupResolver()
	if r.Dead(0) {
		t.Error("Dead(0) = true")
	}
	if got := r.Path(id); got != rel {
		t.Fatalf("Path(%d) = %q, want %q", id, got, rel)
	}
	if r.Dead(id) {
		t.Fatalf("Dead(%d) = true for a live cgroup", id)
	}

	if err := os.Remove(abs); err != nil {
		t.Fatal(err)
	}
	if !r.Dead(id) {
		t.Errorf("Dead(%d) = false after the cgroup was removed", id)
	}
	if got := r.Path(id); got != rel {
		t.Errorf("Path(%d) = %q after removal, want the path it had, %q", id, got, rel)
	}

	t.Run("recreated", func(t *testing.T) {
		// The same path made again is another cgroup, with another id.
		if err := os.Mkdir(abs, 0o755); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(abs)
		r := NewCgroupResolver()
		if got := r.Path(id); got != "" {
			t.Skipf("the new cgroup reused id %d", id)
		}
		r.paths[id] = rel // as if resolved before the cgroup was made again
		if !r.Dead(id) {
			t.Errorf("Dead(%d) = false for a path now held by another cgroup", id)
		}
	})

	t.Run("never seen", func(t *testing.T) {
		r := NewCgroupResolver()
		if !r.Dead(id) {
			t.Errorf("Dead(%d) = false for a removed cgroup the resolver never saw", id)
		}
		if r.Path(id) != "" {
			t.Errorf("Path(%d) = %q for a removed cgroup", id, r.Path(id))
		}
	})
}
