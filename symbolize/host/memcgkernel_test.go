package host

import (
	"testing"
	"testing/fstest"
)

// TestReadMemcgKernel: cgroup v1's memory.kmem.usage_in_bytes and v2's
// memory.stat, down to the depth asked, the root first then by size.
func TestReadMemcgKernel(t *testing.T) {
	v1 := fstest.MapFS{
		"memory.kmem.usage_in_bytes":       {Data: []byte("77086720\n")},
		"a/memory.kmem.usage_in_bytes":     {Data: []byte("4096\n")},
		"b/memory.kmem.usage_in_bytes":     {Data: []byte("8192\n")},
		"b/x/memory.kmem.usage_in_bytes":   {Data: []byte("100\n")},
		"b/x/y/memory.kmem.usage_in_bytes": {Data: []byte("50\n")},
	}
	got := readMemcgKernel(v1, true, 2)
	want := []MemcgKernel{{"/", 77086720, -1}, {"/b", 8192, -1}, {"/a", 4096, -1}, {"/b/x", 100, -1}}
	if len(got) != len(want) {
		t.Fatalf("v1: %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("v1 [%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
	v2 := fstest.MapFS{
		"memory.stat":         {Data: []byte("anon 1\nkernel 900\nslab_unreclaimable 300\n")},
		"pod/memory.stat":     {Data: []byte("kernel 500\nslab_unreclaimable 200\n")},
		"old/memory.stat":     {Data: []byte("slab_unreclaimable 20\n")}, // before 5.18: no kernel
		"nostat/cgroup.procs": {Data: nil},
	}
	got = readMemcgKernel(v2, false, 3)
	want = []MemcgKernel{{"/", 900, 300}, {"/pod", 500, 200}, {"/old", -1, 20}}
	if len(got) != len(want) {
		t.Fatalf("v2: %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("v2 [%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
}
