package bpf

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// The call site of a page allocation. mm_page_alloc passes none, so the
// programs read the first frames of the stack and take the first one past
// the page allocator's functions (page_site in bpf/c/stacks.h), whose text
// ranges the loader finds in kallsyms.

// nrPageRanges is PAGE_RANGES of bpf/c/maps.h.
const nrPageRanges = 32

// pageAllocatorFuncs are the page allocator's entry points and wrappers, by
// their name without the _noprof suffix of allocation-profiling kernels
// (6.10+) and the compiler's .isra/.constprop suffixes: the functions
// between mm_page_alloc's tracepoint and the code that wanted the pages,
// on kernels 5.10 to 7.x.
var pageAllocatorFuncs = map[string]bool{
	"__alloc_pages": true, "__alloc_pages_nodemask": true, "alloc_pages": true,
	"alloc_pages_current": true, "alloc_pages_vma": true, "alloc_pages_mpol": true,
	"alloc_pages_node": true, "__alloc_pages_node": true,
	"__alloc_frozen_pages": true, "alloc_frozen_pages": true, "alloc_frozen_pages_nolock": true,
	"alloc_pages_nolock": true, "__folio_alloc": true, "folio_alloc": true,
	"folio_alloc_mpol": true, "vma_alloc_folio": true, "__get_free_pages": true,
	"get_zeroed_page": true, "alloc_pages_exact": true, "alloc_pages_exact_nid": true,
	"__alloc_pages_bulk": true, "alloc_pages_bulk": true, "alloc_pages_bulk_array_mempolicy": true,
	"alloc_pages_bulk_mempolicy": true, "alloc_pages_bulk_array": true,
	"__page_frag_alloc_align": true, "page_frag_alloc_align": true, "page_frag_alloc": true,
	"__page_frag_cache_refill": true, "__page_frag_alloc": true,
}

// pageAllocatorBase strips the suffixes a page allocator function's name
// may carry (".isra.0", ".constprop.0", "_noprof").
func pageAllocatorBase(name string) string {
	if i := strings.IndexByte(name, '.'); i > 0 {
		name = name[:i]
	}
	return strings.TrimSuffix(name, "_noprof")
}

// textRange is [start, end) of kernel text.
type textRange struct{ start, end uint64 }

// readPageAllocatorRanges reads the page allocator's text ranges from
// /proc/kallsyms.
func readPageAllocatorRanges() ([]textRange, error) {
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return pageAllocatorRanges(f)
}

// pageAllocatorRanges finds, in kallsyms text, the functions of
// pageAllocatorFuncs in the kernel image (not modules): each from its
// address to the next symbol's, sorted, adjacent ones merged. It fails
// when addresses are hidden or none is found.
func pageAllocatorRanges(r io.Reader) ([]textRange, error) {
	type sym struct {
		addr uint64
		page bool
	}
	var syms []sym
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 3 { // module symbols have a fourth field
			continue
		}
		addr, err := strconv.ParseUint(fs[0], 16, 64)
		if err != nil || addr == 0 {
			continue
		}
		syms = append(syms, sym{addr, (fs[1] == "t" || fs[1] == "T") && pageAllocatorFuncs[pageAllocatorBase(fs[2])]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading kallsyms: %w", err)
	}
	sort.SliceStable(syms, func(i, j int) bool { return syms[i].addr < syms[j].addr })
	var out []textRange
	for i, s := range syms {
		if !s.page {
			continue
		}
		end := s.addr + 1
		for j := i + 1; j < len(syms); j++ {
			if syms[j].addr > s.addr {
				end = syms[j].addr
				break
			}
		}
		if n := len(out); n > 0 && out[n-1].end >= s.addr {
			out[n-1].end = max(out[n-1].end, end)
			continue
		}
		out = append(out, textRange{s.addr, end})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no page allocator function in kallsyms (addresses hidden?)")
	}
	return out, nil
}

// pageRangeConsts is the page_range and page_range_n configuration of the
// programs, and a note when the ranges could not all be given.
func pageRangeConsts() (ranges [nrPageRanges][2]uint64, n uint32, note string) {
	rs, err := readPageAllocatorRanges()
	if err != nil {
		return ranges, 0, "page allocations have no call site (" + err.Error() + "): in the adaptive mode they share one, and --mode full walks their stacks"
	}
	if len(rs) > nrPageRanges {
		note = fmt.Sprintf("page call sites: %d of the page allocator's %d text ranges are known to the programs; frames in the others may be taken for call sites", nrPageRanges, len(rs))
		rs = rs[:nrPageRanges]
	}
	for i, r := range rs {
		ranges[i] = [2]uint64{r.start, r.end}
	}
	return ranges, uint32(len(rs)), note
}
