package host

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/kmemprof/kmemprof/tracer"
)

// Cgroup2Mount returns where the cgroup v2 hierarchy is mounted
// (/sys/fs/cgroup on unified systems, /sys/fs/cgroup/unified on hybrid ones),
// or "" when it is not mounted.
func Cgroup2Mount() string {
	return findMount(func(fstype, superOpts string) bool { return fstype == "cgroup2" })
}

// cgroupV1Mount returns where the cgroup v1 hierarchy of controller is
// mounted, or "".
func cgroupV1Mount(controller string) string {
	return findMount(func(fstype, superOpts string) bool {
		return fstype == "cgroup" && slices.Contains(strings.Split(superOpts, ","), controller)
	})
}

// findMount returns the mount point of the first mount of a file system's
// root (not a bind mount of a subdirectory) that match accepts, from
// /proc/self/mountinfo, or "".
func findMount(match func(fstype, superOpts string) bool) string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 36 35 0:30 / /sys/fs/cgroup/unified rw,... shared:9 - cgroup2 cgroup2 rw
		// 35 25 0:31 / /sys/fs/cgroup/memory rw,... - cgroup cgroup rw,memory
		line := sc.Text()
		sep := strings.Index(line, " - ")
		if sep < 0 {
			continue
		}
		post := strings.Fields(line[sep+3:])
		pre := strings.Fields(line[:sep])
		if len(post) < 1 || len(pre) < 5 || pre[3] != "/" {
			continue
		}
		opts := ""
		if len(post) >= 3 {
			opts = post[2]
		}
		if match(post[0], opts) {
			return pre[4]
		}
	}
	return ""
}

// CgroupResolver turns cgroup v2 ids (what bpf_get_current_cgroup_id returns:
// the inode number of the cgroup directory) into paths relative to the
// cgroup2 mount, such as "/system.slice/docker-1234.scope". It is not safe for
// concurrent use.
//
// The ids are those of the v2 hierarchy even on a hybrid or cgroup v1 system,
// where the v2 tree may hold little more than the root; the v1 paths of a
// live process (its memory cgroup, say) come from CgroupPathsOfPID.
type CgroupResolver struct {
	mount string
	paths map[uint64]string
	// missing holds ids not found by a walk made after they were first asked
	// for (removed cgroups): they do not trigger another walk.
	missing map[uint64]bool
	// dead holds ids resolved once whose directory has since gone.
	dead map[uint64]bool
}

// NewCgroupResolver returns a resolver for the cgroup2 mount, or one that
// resolves nothing when cgroup2 is not mounted.
func NewCgroupResolver() *CgroupResolver {
	return &CgroupResolver{mount: Cgroup2Mount(), paths: map[uint64]string{}, missing: map[uint64]bool{}}
}

// Learn adds paths known from elsewhere (Tracer.CgroupV2Names: cgroups made
// and perhaps removed during a capture), so that a removed cgroup's objects
// keep its path, marked " (deleted)".
func (r *CgroupResolver) Learn(paths map[uint64]string) {
	for id, p := range paths {
		if _, ok := r.paths[id]; !ok {
			r.paths[id] = p
		}
	}
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

// Dead reports whether id names a cgroup that no longer exists, so that a
// caller can label the allocations of removed cgroups (a container that
// exited, say) "dead": an id no walk of the hierarchy found, because the
// cgroup was removed before its path was asked for, or an id whose
// directory has gone since its path was found. It resolves id as Path does
// when it has not been asked for yet. It returns false for id 0, when
// cgroup2 is not mounted, and when the cgroup still exists.
func (r *CgroupResolver) Dead(id uint64) bool {
	if id == 0 || r.mount == "" {
		return false
	}
	p := r.Path(id)
	if p == "" {
		return r.missing[id]
	}
	if r.dead[id] {
		return true
	}
	if cgroupGone(r.mount, p, id) {
		if r.dead == nil {
			r.dead = make(map[uint64]bool)
		}
		r.dead[id] = true
		return true
	}
	return false
}

// CgroupPathsOfPID reads /proc/PID/cgroup and returns the cgroup path of
// each controller, as ParseProcCgroup does: on a cgroup v1 or hybrid system
// "memory" -> "/docker/3f4e...", and the v2 path under the key CgroupV2
// (""). It is how to find the v1 cgroups of a process, which cgroup ids
// recorded in the kernel (v2 only) cannot give. It returns an error wrapping
// fs.ErrNotExist when the process has exited.
func CgroupPathsOfPID(pid int) (map[string]string, error) {
	name := "/proc/" + strconv.Itoa(pid) + "/cgroup"
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	defer f.Close()
	paths, err := ParseProcCgroup(f)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	return paths, nil
}

func (r *CgroupResolver) walk() { walkCgroups(r.mount, r.paths) }

// walkCgroups adds every cgroup directory under mount to paths, by id (its
// inode number, which the kernel calls the kernfs id), as a path relative
// to the hierarchy's root: "/", "/system.slice/foo.service".
func walkCgroups(mount string, paths map[uint64]string) {
	if mount == "" {
		return
	}
	_ = filepath.WalkDir(mount, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil // a cgroup removed while walking
		}
		var st syscall.Stat_t
		if syscall.Lstat(p, &st) != nil {
			return nil
		}
		rel, err := filepath.Rel(mount, p)
		if err != nil {
			return nil
		}
		paths[st.Ino] = "/" + strings.TrimPrefix(filepath.ToSlash(rel), ".")
		return nil
	})
}

// cgroupGone reports whether the cgroup id, found at path under mount, is
// gone: its directory removed, or made anew under the same name (a
// restarted service), with another id.
func cgroupGone(mount, path string, id uint64) bool {
	var st syscall.Stat_t
	err := syscall.Stat(filepath.Join(mount, path), &st)
	return errors.Is(err, fs.ErrNotExist) || (err == nil && st.Ino != id)
}

// MemcgHierarchy is where the memory controller is: a cgroup v1 hierarchy
// of its own, or cgroup v2.
type MemcgHierarchy struct {
	Mount string // where it is mounted; "" when it is not
	V1ID  uint32 // the v1 hierarchy's id (/proc/cgroups); 0 for v2
}

// FindMemcgHierarchy finds the memory controller's hierarchy.
func FindMemcgHierarchy() MemcgHierarchy {
	// From 6.15 /proc/cgroups lists only the controllers bound to v1.
	cg, _ := readProcFile(os.DirFS("/proc"), "cgroups", ParseProcCgroups)
	if mem, ok := cg["memory"]; ok && mem[0] != 0 {
		return MemcgHierarchy{Mount: cgroupV1Mount("memory"), V1ID: uint32(mem[0])}
	}
	return MemcgHierarchy{Mount: Cgroup2Mount()}
}

func (h MemcgHierarchy) String() string {
	if h.V1ID != 0 {
		return "the cgroup v1 memory hierarchy"
	}
	return "cgroup v2"
}

// FilterID returns the id of the memory cgroup --memcg names: a directory
// of the memory controller's hierarchy, given as a path under its mount or
// relative to the hierarchy's root ("/docker/3f4e..."). The error says
// what to give instead.
func (h MemcgHierarchy) FilterID(path string) (uint64, error) {
	if h.Mount == "" {
		return 0, fmt.Errorf("--memcg %s: the memory controller's hierarchy (%s) is not mounted", path, h)
	}
	full := path
	if rel, err := filepath.Rel(h.Mount, path); err != nil || strings.HasPrefix(rel, "..") || !filepath.IsAbs(path) {
		full = filepath.Join(h.Mount, path)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(full, &st); err != nil {
		return 0, fmt.Errorf("--memcg %s: %w (give a memory cgroup's path under %s, or relative to it)", path, err, h.Mount)
	}
	if st.Type != unix.CGROUP_SUPER_MAGIC && st.Type != unix.CGROUP2_SUPER_MAGIC {
		return 0, fmt.Errorf("--memcg %s: %s is not a cgroup directory (the memory controller is on %s, mounted at %s)", path, full, h, h.Mount)
	}
	var fi syscall.Stat_t
	if err := syscall.Stat(full, &fi); err != nil {
		return 0, fmt.Errorf("--memcg %s: %w", path, err)
	}
	if fi.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return 0, fmt.Errorf("--memcg %s: %s is not a cgroup directory", path, full)
	}
	return fi.Ino, nil
}

// cgroupNames maps the ids of one cgroup hierarchy's directories (their
// inode numbers, which the kernel calls kernfs ids) to their paths relative
// to the hierarchy's root.
type cgroupNames struct {
	mount string
	paths map[uint64]string
}

func newCgroupNames(mount string) *cgroupNames {
	return &cgroupNames{mount: mount, paths: map[uint64]string{}}
}

// walk adds every cgroup of the hierarchy as it is now.
func (n *cgroupNames) walk() { walkCgroups(n.mount, n.paths) }

// prune keeps the paths of the cgroups that exist now and of those in keep.
func (n *cgroupNames) prune(keep map[uint64]bool) {
	old := n.paths
	n.paths = map[uint64]string{}
	n.walk()
	for id := range keep {
		if p, ok := old[id]; ok {
			if _, live := n.paths[id]; !live {
				n.paths[id] = p
			}
		}
	}
}

// memcg describes id: its path (from a walk or cgroup_mkdir), and whether
// the cgroup is gone: no directory has that id any more. walked says
// whether a walk since the last snapshot found what exists now.
func (n *cgroupNames) memcg(id uint64, walked *bool) tracer.Memcg {
	p, ok := n.paths[id]
	if !ok && !*walked {
		n.walk()
		*walked = true
		p, ok = n.paths[id]
	}
	if !ok {
		return tracer.Memcg{Removed: true}
	}
	return tracer.Memcg{Path: p, Removed: cgroupGone(n.mount, p, id)}
}

// MemcgMount returns where the memory controller's hierarchy is mounted
// ("" when it is not), and whether it is a cgroup v1 hierarchy.
func MemcgMount() (mount string, v1 bool) {
	h := FindMemcgHierarchy()
	return h.Mount, h.V1ID != 0
}

// Names names the cgroups a capture's records point to: those that existed
// when it started (walked), and those made during it, which the tracer saw
// made (Learn). A removed cgroup keeps its name, marked removed.
type Names struct {
	memcgV1   uint32
	memcg, v2 *cgroupNames
}

// NewNames walks the memory controller's hierarchy h and, on a v1 or
// hybrid host, cgroup v2 too. Call it once the tracer is attached, so that
// every cgroup made afterwards is one it sees made.
func NewNames(h MemcgHierarchy) *Names {
	n := &Names{memcgV1: h.V1ID, memcg: newCgroupNames(h.Mount)}
	n.memcg.walk()
	n.v2 = n.memcg
	if h.V1ID != 0 {
		n.v2 = newCgroupNames(Cgroup2Mount())
		n.v2.walk()
	}
	return n
}

// Learn adds a cgroup the tracer saw made: its id and path in the
// hierarchy of that id (0: cgroup v2). Other hierarchies are ignored.
func (n *Names) Learn(hierarchy uint32, id uint64, path string) {
	switch hierarchy {
	case n.memcgV1:
		n.memcg.paths[id] = path
	case 0:
		n.v2.paths[id] = path
	}
}

// V2 returns the cgroup v2 paths known, by id, removed cgroups included
// (for CgroupResolver.Learn). The caller must not modify it.
func (n *Names) V2() map[uint64]string { return n.v2.paths }

// maxCgroupNames is how many cgroup paths Names keeps before it forgets
// those of removed cgroups no record points to.
const maxCgroupNames = 65536

// Memcgs names the memory cgroups snap's records and totals point to
// (tracer.Snapshot.Memcgs), and says which were removed. A long run (an
// agent) on a host that makes containers all day forgets, past
// maxCgroupNames, the removed cgroups no record points to any more.
func (n *Names) Memcgs(snap *tracer.Snapshot) map[uint64]tracer.Memcg {
	out := map[uint64]tracer.Memcg{}
	walked := false
	add := func(id uint64) {
		if _, ok := out[id]; !ok && id != 0 {
			out[id] = n.memcg.memcg(id, &walked)
		}
	}
	for i := range snap.Records {
		add(snap.Records[i].MemcgID)
	}
	for i := range snap.Totals {
		add(snap.Totals[i].MemcgID)
	}
	if len(n.memcg.paths) > maxCgroupNames || len(n.v2.paths) > maxCgroupNames {
		keep := map[uint64]bool{}
		for id := range out {
			keep[id] = true
		}
		for i := range snap.Records {
			keep[snap.Records[i].CgroupID] = true
		}
		for i := range snap.Totals {
			keep[snap.Totals[i].CgroupID] = true
		}
		n.memcg.prune(keep)
		if n.v2 != n.memcg {
			n.v2.prune(keep)
		}
	}
	return out
}
