package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kmemprof/kmemprof/tracer"
)

// TestProfileBelongsToSudoUser: a profile written by root under sudo
// (SUDO_UID, SUDO_GID) belongs to that user, still mode 0600, and that user
// can read it; the next step printed names kmemprof serve first.
func TestProfileBelongsToSudoUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, as under sudo")
	}
	const nobody = 65534
	t.Setenv("SUDO_UID", "65534")
	t.Setenv("SUDO_GID", "65534")
	dir := t.TempDir()
	// t.TempDir and its parent are 0700: let the user in.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Unix(5000, 0)
	agg, err := tracer.Aggregate(&tracer.Snapshot{
		Taken:   now,
		Stacks:  map[tracer.StackID][]uint64{1: {0xffffffff81000010}},
		Records: []tracer.Record{{Key: tracer.Key{Kind: tracer.KindSlab, Stack: 1, Cache: "filp"}, BytesAlloc: 256, Time: now.UnixNano()}},
	}, nil, tracer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "kmem.pb.gz")
	var stdout, stderr bytes.Buffer
	if err := writeOutputs(&recordOptions{output: out}, agg, &stdout, &stderr, nil); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != nobody || st.Gid != nobody || fi.Mode().Perm() != 0o600 {
		t.Errorf("profile owned by %d:%d mode %v, want %d:%d 0600", st.Uid, st.Gid, fi.Mode().Perm(), nobody, nobody)
	}
	cat := exec.Command("/bin/cat", out)
	cat.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	var catErr bytes.Buffer
	cat.Stderr = &catErr
	data, err := cat.Output()
	if err != nil {
		err = fmt.Errorf("%w: %s", err, catErr.String())
	}
	if err != nil || len(data) < 2 || data[0] != 0x1f || data[1] != 0x8b {
		t.Errorf("reading the profile as uid %d: %d bytes, %v", nobody, len(data), err)
	}
	if !strings.Contains(stderr.String(), "serve "+out) {
		t.Errorf("the next step does not name kmemprof serve: %q", stderr.String())
	}
}

// TestSudoUser: only a root process with both variables set writes for
// another user.
func TestSudoUser(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	uid, gid, ok := sudoUser(env(map[string]string{"SUDO_UID": "1000", "SUDO_GID": "1001"}))
	if want := os.Geteuid() == 0; ok != want || (ok && (uid != 1000 || gid != 1001)) {
		t.Errorf("SUDO_UID=1000 SUDO_GID=1001: %d %d %v", uid, gid, ok)
	}
	for _, m := range []map[string]string{{}, {"SUDO_UID": "1000"}, {"SUDO_UID": "x", "SUDO_GID": "1"}, {"SUDO_UID": "0", "SUDO_GID": "0"}} {
		if _, _, ok := sudoUser(env(m)); ok {
			t.Errorf("%v: taken as a sudo user", m)
		}
	}
}

// TestAddressesHiddenFix: the fix named for hidden kernel addresses
// depends on kernel.kptr_restrict: at 2 nobody sees them, root included.
func TestAddressesHiddenFix(t *testing.T) {
	if fix := addressesHiddenFix(2, true); !strings.Contains(fix, "root included") || !strings.Contains(fix, "kptr_restrict=1") || strings.Contains(fix, "run as root") {
		t.Errorf("kptr_restrict=2 as root: %q", fix)
	}
	if fix := addressesHiddenFix(1, true); !strings.Contains(fix, "CAP_SYSLOG") || strings.Contains(fix, "run as root") {
		t.Errorf("kptr_restrict=1 as root: %q", fix)
	}
	if fix := addressesHiddenFix(1, false); !strings.Contains(fix, "run as root") {
		t.Errorf("kptr_restrict=1 as a user: %q", fix)
	}
}
