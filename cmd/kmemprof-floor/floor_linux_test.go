package main

import (
	"testing"

	"github.com/cilium/ebpf/link"

	"github.com/kmemprof/kmemprof/bpf/bpftest"
)

// links counts the raw tracepoint links of the system.
func links(t *testing.T) int {
	t.Helper()
	it := new(link.Iterator)
	n := 0
	defer it.Close()
	for it.Next() {
		l := it.Take()
		if info, err := l.Info(); err == nil && info.Type == link.RawTracepointType {
			n++
		}
		l.Close()
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestAttach: with --backups --walk the floor attaches six programs (one per
// allocation tracepoint, two per free tracepoint), and detaches them all.
func TestAttach(t *testing.T) {
	bpftest.Require(t)
	before := links(t)
	closeAll, err := attach(&options{backups: true, walk: true})
	if err != nil {
		t.Fatal(err)
	}
	during := links(t)
	closeAll()
	after := links(t)
	if during-before != 6 || after != before {
		t.Errorf("raw tracepoint links: %d before, %d attached, %d after; want 6 attached and all gone", before, during, after)
	}
}
