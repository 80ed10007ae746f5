package bpf

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Cgroup2Mount returns where the cgroup v2 hierarchy is mounted
// (/sys/fs/cgroup on unified systems, /sys/fs/cgroup/unified on hybrid ones),
// or "" when it is not mounted.
func Cgroup2Mount() string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 36 35 0:30 / /sys/fs/cgroup/unified rw,... shared:9 - cgroup2 cgroup2 rw
		line := sc.Text()
		sep := strings.Index(line, " - ")
		if sep < 0 {
			continue
		}
		post := strings.Fields(line[sep+3:])
		pre := strings.Fields(line[:sep])
		if len(post) > 0 && post[0] == "cgroup2" && len(pre) >= 5 && pre[3] == "/" {
			return pre[4]
		}
	}
	return ""
}

// CgroupResolver turns cgroup v2 ids (what bpf_get_current_cgroup_id returns:
// the inode number of the cgroup directory) into paths relative to the
// cgroup2 mount, such as "/system.slice/docker-1234.scope". It is not safe for
// concurrent use.
type CgroupResolver struct {
	mount string
	paths map[uint64]string
	// missing holds ids not found by a walk made after they were first asked
	// for (removed cgroups): they do not trigger another walk.
	missing map[uint64]bool
}

// NewCgroupResolver returns a resolver for the cgroup2 mount, or one that
// resolves nothing when cgroup2 is not mounted.
func NewCgroupResolver() *CgroupResolver {
	return &CgroupResolver{mount: Cgroup2Mount(), paths: map[uint64]string{}, missing: map[uint64]bool{}}
}

// Path returns the cgroup path of id, or "" when it is unknown (for example
// a cgroup removed before the capture ended).
func (r *CgroupResolver) Path(id uint64) string {
	if p, ok := r.paths[id]; ok {
		return p
	}
	if r.missing[id] {
		return ""
	}
	// A cgroup made since the last walk: walk again, once per unknown id.
	r.walk()
	if p, ok := r.paths[id]; ok {
		return p
	}
	r.missing[id] = true
	return ""
}

func (r *CgroupResolver) walk() {
	if r.mount == "" {
		return
	}
	filepath.WalkDir(r.mount, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		rel := strings.TrimPrefix(path, r.mount)
		if rel == "" {
			rel = "/"
		}
		r.paths[st.Ino] = rel
		return nil
	})
}
