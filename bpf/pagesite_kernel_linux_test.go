package bpf

import (
	"testing"
	"time"

	"github.com/kmemprof/kmemprof/bpf/bpftest"
	"github.com/kmemprof/kmemprof/tracer"
)

// TestPageLeakOwnSite: in the default (adaptive) mode, a page leak made
// while another process churns anonymous memory is found under its own
// call site, walked once the site is hot: mm_page_alloc passes no call
// site, and without one every page allocation shared one adaptive site,
// which the churn cooled, leaving the leak's pages unwalked.
func TestPageLeakOwnSite(t *testing.T) {
	bpftest.Require(t)
	tr, err := Open(Config{Tracking: TrackAdaptive, Kinds: []tracer.Kind{tracer.KindSlab, tracer.KindPage}, MaxOutstanding: 1 << 18})
	if err != nil {
		t.Fatalf("Open: %+v", err)
	}
	defer tr.Close()
	churn := bpftest.StartAnonChurn(t)
	// Let the churn run long enough for a shared site to be cooled (the
	// user-space cooler runs every coolEvery).
	time.Sleep(2*coolEvery + time.Second)
	const n = 3000
	c := bpftest.StartPipeFiller(t, n)
	c.Wait(t, "filled")
	time.Sleep(2 * coolEvery) // cooling rounds while the leak holds
	if err := tr.Detach(); err != nil {
		t.Fatal(err)
	}
	churn.Stdin().Close()
	snap, err := tr.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	checkAccounting(t, snap)
	name := "anon_pipe_write"
	if !kallsymsHas(name) {
		name = "pipe_write"
	}
	lo, hi := funcRange(t, name)
	// The filler's other pages (its own memory, page tables) are elsewhere.
	var walked, atSite, elsewhere int
	for _, r := range snap.Records {
		if int(r.PID) != c.PID || r.Kind != tracer.KindPage {
			continue
		}
		st := snap.Stacks[r.Stack]
		switch {
		case snap.Partial[r.Stack] && stackHas(st, lo, hi):
			atSite++
		case !snap.Partial[r.Stack] && stackHas(st, lo, hi):
			walked++
		default:
			elsewhere++
		}
	}
	t.Logf("%d pages of the pipes: %d walked through %s, %d under its call site only, %d elsewhere; page_site_unknown=%d",
		n, walked, name, atSite, elsewhere, counter(snap, "page_site_unknown"))
	// Each pipe write allocates one page; the adaptive mode keeps the first
	// --hot-threshold (64) of a site under the call site only.
	if got := walked + atSite; got < n*97/100 || got > n*103/100 {
		t.Errorf("%d of the filler's pages under %s, want %d +-3%%", got, name, n)
	}
	if walked < n*97/100-64 {
		t.Errorf("only %d of the filler's %d pages have their stack walked: its call site was not hot", walked, n)
	}
}

// TestLargeKmallocOnce: from 6.10 the kernel fires the kmalloc tracepoint
// twice for a large kmalloc made through __do_kmalloc_node (kvmalloc's
// arrays: a file descriptor table that grows past 1,024 entries). Each is
// one allocation, found again by its one kfree: none may show as an
// allocation at a tracked pointer (a missed free).
func TestLargeKmallocOnce(t *testing.T) {
	bpftest.Require(t)
	tr, err := Open(Config{Tracking: TrackFull, MaxOutstanding: 1 << 18})
	if err != nil {
		t.Fatalf("Open: %+v", err)
	}
	defer tr.Close()
	// 5,000 descriptors: the table grows to 8,192 entries, its 16, 32 and 64
	// KiB arrays are large kmallocs, the older ones freed as it grows.
	l := bpftest.StartLeaker(t, 5000)
	l.Release(t)
	time.Sleep(time.Second) // the old tables are freed after an RCU grace period
	if err := tr.Detach(); err != nil {
		t.Fatal(err)
	}
	snap, err := tr.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	checkAccounting(t, snap)
	if n := snap.UntracedFrees["kmalloc-large"]; n != 0 {
		t.Errorf("%d large kmallocs found at a tracked pointer: the kernel's second event of one was taken for another allocation", n)
	}
	t.Logf("nested_allocs=%d alloc_at_tracked_ptr=%d", counter(snap, "nested_allocs"), counter(snap, "alloc_at_tracked_ptr"))
}
