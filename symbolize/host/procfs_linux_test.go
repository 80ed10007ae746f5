package host

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

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
	abs, rel := bpftest.Cgroup(t, Cgroup2Mount())
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

// TestDyingMemcgCounted: memory cgroups are counted on cgroup v1 (this
// machine) and v2 (the kernel matrix): one made is one more, and once it is
// removed the live ones are as before, whether the kernel frees it at once
// or keeps it dying while page cache charged to it lives on (which one
// differs between kernels and runs: 6.1 freed it in one matrix run and kept
// it in the next).
func TestDyingMemcgCounted(t *testing.T) {
	bpftest.Require(t)
	count := func() MemcgCount {
		var v1, v2 fs.FS
		if m := cgroupV1Mount("memory"); m != "" {
			v1 = os.DirFS(m)
		}
		if m := Cgroup2Mount(); m != "" {
			v2 = os.DirFS(m)
		}
		return memcgCount(os.DirFS("/proc"), v1, v2)
	}
	parent := cgroupV1Mount("memory")
	if parent == "" {
		parent = Cgroup2Mount()
		if parent == "" {
			t.Skip("no memory cgroup hierarchy is mounted")
		}
		// Children of the v2 root get the memory controller once the root
		// hands it down.
		if err := os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte("+memory"), 0); err != nil {
			t.Skipf("cannot enable the memory controller for the v2 root's children: %v", err)
		}
	}
	before := count()
	if before.Source == "" || !before.DyingKnown {
		t.Fatalf("memory cgroups not counted: %+v", before)
	}
	dir := filepath.Join(parent, fmt.Sprintf("kmemprof-dying-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Live counts: dying cgroups of earlier tests may be freed meanwhile.
	live := func(c MemcgCount) uint64 { return c.Total - c.Dying }
	made := count()
	if live(made) != live(before)+1 {
		os.Remove(dir)
		t.Fatalf("after making a memory cgroup: %+v, before %+v; want one more live", made, before)
	}
	file := filepath.Join(t.TempDir(), "charged")
	// The shell joins the cgroup, writes 4 MiB of page cache charged to it,
	// and exits; the pages stay.
	out, err := exec.Command("sh", "-c", `echo $$ > "$1/cgroup.procs" && dd if=/dev/zero of="$2" bs=64k count=64 2>/dev/null`, "sh", dir, file).CombinedOutput()
	if err != nil {
		os.Remove(dir)
		t.Fatalf("charging the cgroup: %v %s", err, out)
	}
	t.Cleanup(func() { os.Remove(file) })
	var rmErr error
	for range 50 {
		if rmErr = os.Remove(dir); rmErr == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if rmErr != nil {
		t.Fatalf("removing the cgroup: %v", rmErr)
	}
	after := count()
	t.Logf("%s: before %+v, made %+v, removed %+v", after.Source, before, made, after)
	if live(after) != live(before) {
		t.Errorf("live memory cgroups after removing the one made: %d, want %d as before", live(after), live(before))
	}
	if after.Dying > made.Dying+1 {
		t.Errorf("removing one memory cgroup: %+v -> %+v", made, after)
	}
}
