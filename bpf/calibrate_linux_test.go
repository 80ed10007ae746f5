package bpf

import (
	"fmt"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kmemprof/kmemprof/bpf/bpftest"
	"github.com/kmemprof/kmemprof/tracer"
)

// TestCalibrationFindsCaches checks the linear-map calibration against the
// kernel's own answer: in raw_tp mode on kernels whose kmem_cache_alloc
// passes the cache, each record holds both the object and its cache, and the
// object-to-cache path must give the same cache for every one of them.
func TestCalibrationFindsCaches(t *testing.T) {
	bpftest.Require(t)
	tr, err := Open(Config{Mode: ModeRawTP, Tracking: TrackFull, MaxOutstanding: 1 << 16, MaxStacks: 1 << 12})
	if err != nil {
		t.Fatalf("Open: %+v", err)
	}
	defer tr.Close()
	if err := tr.calibrate(); err != nil {
		t.Fatalf("calibrate: %v", err)
	}
	if tr.argIdxCache() == 0 {
		t.Skip("kmem_cache_alloc passes no cache on this kernel: nothing to compare with")
	}
	// The leaker's objects are live when they are checked; any other
	// record may be of an object freed unseen (kmem_cache_free_bulk
	// where it has no hook, a free nested in the free program before its
	// backup was attached) whose page another cache has taken since.
	l := bpftest.StartLeaker(t, 500)
	if err := tr.Detach(); err != nil {
		t.Fatal(err)
	}
	var c uint64
	if err := tr.vars.VmPageC.Get(&c); err != nil {
		t.Fatal(err)
	}
	prog := tr.coll.Programs["obj_cache_probe"]
	checked, wrong := 0, 0
	_, err = tr.readTable(false, func(key uint64, v *kmemprofAllocInfo) {
		if v.Hook != uint8(hookCacheAlloc) || tracer.Kind(v.Kind) != tracer.KindSlab || v.Cache == 0 || int(v.Tgid) != l.PID {
			return
		}
		got, err := tr.runProbe(prog, c, keyAddr(key))
		if err != nil {
			t.Fatal(err)
		}
		checked++
		if got != v.Cache {
			wrong++
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	// Each eventfd: its file and the file's LSM blob from kmem_cache_alloc.
	if checked < 2*500 || wrong > 0 {
		t.Fatalf("object-to-cache: %d of %d records gave another cache than the tracepoint", wrong, checked)
	}
	t.Logf("%d objects mapped to their cache", checked)
}

// TestFeatureProbes checks the feature probes against what this kernel
// must have: every kernel the tests run on has BPF atomics and
// bpf_get_current_task_btf, except those before 5.12 and 5.11.
func TestFeatureProbes(t *testing.T) {
	bpftest.Require(t)
	f := probeFeatures()
	var u unix.Utsname
	unix.Uname(&u)
	var major, minor int
	fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor)
	v := major*100 + minor
	if got, want := f.atomics, v >= 512; got != want {
		t.Errorf("atomics probe says %v on %d.%d, want %v", got, major, minor, want)
	}
	if got, want := f.taskBTF, v >= 511; got != want {
		t.Errorf("bpf_get_current_task_btf probe says %v on %d.%d, want %v", got, major, minor, want)
	}
	t.Logf("%d.%d: %+v", major, minor, f)
}
