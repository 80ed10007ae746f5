package bpf

import (
	"strings"
	"testing"
)

func TestPageAllocatorRanges(t *testing.T) {
	kallsyms := `ffffffff81300000 T get_page_from_freelist
ffffffff81300800 T __alloc_pages_noprof
ffffffff81300c00 t __alloc_pages_slowpath.constprop.0
ffffffff81301000 T alloc_pages_mpol_noprof
ffffffff81301400 T folio_alloc_mpol_noprof
ffffffff81301600 T folio_alloc_buffers
ffffffff81400000 T pipe_write
ffffffff81400100 T __get_free_pages
ffffffff81400200 D some_data
ffffffffc0000000 t alloc_pages_noprof	[some_module]
`
	rs, err := pageAllocatorRanges(strings.NewReader(kallsyms))
	if err != nil {
		t.Fatal(err)
	}
	// __alloc_pages_noprof alone (its slowpath is not an entry point), then
	// alloc_pages_mpol and folio_alloc_mpol merged, then __get_free_pages up
	// to the data symbol; not the module's.
	want := []textRange{{0xffffffff81300800, 0xffffffff81300c00}, {0xffffffff81301000, 0xffffffff81301600}, {0xffffffff81400100, 0xffffffff81400200}}
	if len(rs) != len(want) {
		t.Fatalf("ranges %x, want %x", rs, want)
	}
	for i := range want {
		if rs[i] != want[i] {
			t.Errorf("range %d: %x, want %x", i, rs[i], want[i])
		}
	}
	if _, err := pageAllocatorRanges(strings.NewReader("0000000000000000 T __alloc_pages\n")); err == nil {
		t.Error("no error with hidden addresses")
	}
}
