package bpf

import (
	"fmt"
	"strings"
	"testing"
)

func TestKprobeMisses(t *testing.T) {
	events := `p:kprobes/other kfree
r256:kmemprof_42_00aa11bb22cc33dd/__kmalloc_noprof __kmalloc_noprof
r256:kmemprof_42_00aa11bb22cc33de/kmem_cache_alloc_noprof kmem_cache_alloc_noprof
r10:kmemprof_4_0011223344556677/kmem_cache_alloc_noprof kmem_cache_alloc_noprof
`
	profile := `  other                                                    5               9
  __kmalloc_noprof                                    123456               3
  kmem_cache_alloc_noprof                              98765               4
  kmem_cache_alloc_noprof                                 10             100
`
	misses, probes, err := kprobeMisses(strings.NewReader(events), strings.NewReader(profile), "kmemprof_42")
	if err != nil {
		t.Fatal(err)
	}
	// Not kprobes/other's 9, nor the other kmemprof's (pid 4) 100: the
	// prefix ends at the pid.
	if misses != 7 || probes != 2 {
		t.Errorf("misses %d of %d probes, want 7 of 2", misses, probes)
	}
	// A kprobe added between the two reads: the lists disagree.
	if _, _, err := kprobeMisses(strings.NewReader(events), strings.NewReader(profile+"  new  1  1\n"), "kmemprof_42"); err == nil {
		t.Error("no error when kprobe_profile lists more kprobes than kprobe_events")
	}
}

// TestWithCallerFrame: arm64's unwinder, started at an allocator's kprobe,
// skips the frame that called the allocator (its return address is still
// in the link register); the kprobe read it, and it goes back after the
// allocator's own frame, unless the walk has it.
func TestWithCallerFrame(t *testing.T) {
	const alloc, caller, grand = 0xffff800080300000, 0xffff800080500010, 0xffff800080600020
	for _, tt := range []struct {
		name     string
		st, want []uint64
	}{
		{"arm64 walk", []uint64{alloc, grand}, []uint64{alloc, caller, grand}},
		{"x86 walk, caller there", []uint64{alloc, caller, grand}, []uint64{alloc, caller, grand}},
		{"empty", nil, []uint64{caller}},
	} {
		got := withCallerFrame(tt.st, caller)
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("%s: %x, want %x", tt.name, got, tt.want)
		}
	}
}
