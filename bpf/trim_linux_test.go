package bpf

import (
	"testing"
	"time"

	"github.com/kmemprof/kmemprof/bpf/bpftest"
	"github.com/kmemprof/kmemprof/tracer"
)

// TestContinuousTrims checks what a capture read every interval (the
// agent) relies on: totals count per interval, and the totals and stacks a
// finished workload leaves are deleted from the kernel maps.
func TestContinuousTrims(t *testing.T) {
	bpftest.Require(t)
	tr, err := Open(Config{Tracking: TrackFull, Continuous: true, MaxOutstanding: 1 << 18, MaxStacks: 1 << 14})
	if err != nil {
		t.Fatalf("Open: %+v", err)
	}
	defer tr.Close()
	lo, hi := funcRange(t, "do_eventfd")
	// eventfdTotals sums the leaker's totals through do_eventfd, and
	// returns their stack ids.
	eventfdTotals := func(snap *tracer.Snapshot, pid int) (n uint64, ids map[tracer.StackID]bool) {
		ids = map[tracer.StackID]bool{}
		for _, tot := range snap.Totals {
			if int(tot.PID) == pid && stackHas(snap.Stacks[tot.Stack], lo, hi) {
				n += tot.Count
				id := tot.Stack
				if base, ok := tr.leafBase[id]; ok {
					id = base
				}
				ids[id] = true
			}
		}
		return n, ids
	}
	const n = 1000
	l := bpftest.StartLeaker(t, n)
	snap1, err := tr.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	got, ids := eventfdTotals(snap1, l.PID)
	if got < n {
		t.Fatalf("first interval: %d allocations through do_eventfd, want >= %d", got, n)
	}
	l.Release(t)
	time.Sleep(500 * time.Millisecond) // dentries are freed after an RCU grace period
	snap2, err := tr.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := eventfdTotals(snap2, l.PID); got != 0 {
		t.Errorf("second interval, the leaker idle: %d allocations through do_eventfd, want 0 (totals per interval)", got)
	}
	if c := counter(snap2, "totals_trimmed"); c < uint64(len(ids)) {
		t.Errorf("totals_trimmed %d after the leaker's interval without allocations, want >= %d", c, len(ids))
	}
	// Deleted from the kernel map, not only counted, on kernels with
	// lookup-and-delete for hash maps (5.14+) and without.
	var key kmemprofTotalsKey
	var vals []kmemprofTotalsVal
	left := 0
	it := tr.maps.Totals.Iterate()
	for it.Next(&key, &vals) {
		if int(key.Tgid) == l.PID && ids[tracer.StackID(key.StackId)] {
			left++
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if left > 0 {
		t.Errorf("%d of the idle leaker's eventfd totals still in the kernel map after trimming", left)
	}
	// Unreferenced at the second and third snapshots: deleted.
	snap3, err := tr.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if c := counter(snap3, "stacks_trimmed"); c == 0 {
		t.Errorf("stacks_trimmed 0, want the leaker's %d stacks deleted", len(ids))
	}
	used := map[tracer.StackID]bool{}
	for _, r := range snap3.Records {
		used[r.Stack] = true
	}
	for _, tot := range snap3.Totals {
		used[tot.Stack] = true
	}
	buf := make([]uint64, tr.cfg.StackDepth)
	for id := range ids {
		if id < 0 || id >= tracer.StackID(tr.cfg.MaxStacks) || used[id] {
			continue // the second-chance store, or in use again by others
		}
		if err := tr.maps.Stacks.Lookup(uint32(id), &buf); err == nil {
			t.Errorf("stack %d of the released leak still in the stack map after two snapshots without it", id)
		}
	}
	// Still tracing: a new workload is walked and counted from zero.
	l2 := bpftest.StartLeaker(t, n)
	snap4, err := tr.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := eventfdTotals(snap4, l2.PID); got < n || got > 8*n {
		t.Errorf("after trimming: %d allocations through do_eventfd for %d eventfds", got, n)
	}
	if c := counter(snap4, "totals_trim_raced"); c != 0 {
		t.Logf("totals_trim_raced %d", c)
	}
}
