package host

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestCgroupNames: ids are directory inodes; a removed directory is
// removed; an id no walk found is removed and unnamed; a directory made
// after the walk is found by walking again; prune forgets removed cgroups
// except those asked to keep. (Directories made anew under a removed one's
// name are left to the kernel tests: tmpfs, unlike cgroupfs, reuses inode
// numbers at once.)
func TestCgroupNames(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"a/b", "a/c", "d"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ab, ac, d := inode(t, filepath.Join(root, "a/b")), inode(t, filepath.Join(root, "a/c")), inode(t, filepath.Join(root, "d"))
	n := newCgroupNames(root)
	n.walk()
	if err := os.Mkdir(filepath.Join(root, "e"), 0o755); err != nil {
		t.Fatal(err)
	}
	e := inode(t, filepath.Join(root, "e"))
	walked := true
	if m := n.memcg(inode(t, root), &walked); m.Path != "/" || m.Removed {
		t.Errorf("root: %+v", m)
	}
	if m := n.memcg(ab, &walked); m.Path != "/a/b" || m.Removed {
		t.Errorf("a/b: %+v", m)
	}
	if m := n.memcg(e, &walked); m.Path != "" || !m.Removed {
		t.Errorf("e, made after the walk, with the snapshot's walk done: %+v", m)
	}
	walked = false
	if m := n.memcg(e, &walked); m.Path != "/e" || m.Removed || !walked {
		t.Errorf("e, made after the walk: %+v (walked again: %v)", m, walked)
	}
	if err := os.Remove(filepath.Join(root, "a/b")); err != nil {
		t.Fatal(err)
	}
	if m := n.memcg(ab, &walked); m.Path != "/a/b" || !m.Removed {
		t.Errorf("a/b removed: %+v", m)
	}
	if m := n.memcg(1<<62, &walked); m.Path != "" || !m.Removed {
		t.Errorf("unknown id: %+v", m)
	}
	if err := os.Remove(filepath.Join(root, "d")); err != nil {
		t.Fatal(err)
	}
	n.prune(map[uint64]bool{ab: true})
	if n.paths[ab] != "/a/b" || n.paths[ac] != "/a/c" || n.paths[e] != "/e" {
		t.Errorf("prune lost a kept or live cgroup: %v", n.paths)
	}
	if _, ok := n.paths[d]; ok {
		t.Errorf("prune kept the removed d, which no record points to: %v", n.paths)
	}
}
