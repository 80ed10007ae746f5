package bpf

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// Where a hook does not pass the slab cache of an allocation (kmem_cache_alloc
// before 6.0, classic tracepoints before the record named the cache, kmalloc
// in kprobe and fentry modes), the BPF programs read it from the object's
// struct slab: the struct page of a linear-map address a is at vm_page_c +
// (a >> PAGE_SHIFT) * sizeof(struct page). vm_page_c depends on the
// architecture, the kernel version and, with KASLR, the boot. calibrate lists
// the layouts this kernel may have and keeps the one under which objects of
// the calling task (its task_struct, mm_struct, files, fs, cred, signal and
// sighand) lie in slabs of the caches of those names; a wrong guess is never
// used.

// calibrationNames are the caches of the objects calib_probe looks at, in
// its order.
var calibrationNames = []string{"task_struct", "mm_struct", "files_cache", "fs_cache", "cred_jar", "signal_cache", "sighand_cache"}

// calibrationSymbols are the x86-64 variables holding the linear map and
// vmemmap bases under KASLR (in /proc/kallsyms with CONFIG_KALLSYMS_ALL).
var calibrationSymbols = []string{"page_offset_base", "vmemmap_base"}

// calibrate sets vm_page_c.
func (t *Tracer) calibrate() error {
	spec, err := kernelBTF()
	if err != nil {
		return err
	}
	var page *btf.Struct
	if err := spec.TypeByName("page", &page); err != nil {
		return fmt.Errorf("struct page: %w", err)
	}
	sz := uint64(page.Size)
	shift := uint(0)
	for 1<<shift < os.Getpagesize() {
		shift++
	}
	prog := t.coll.Programs["calib_probe"]
	names := t.vars.CalibNames
	if prog == nil {
		return errors.New("calib_probe was not loaded")
	}
	cands, how := t.linearMapCandidates(shift, sz)
	best := 0
	for _, c := range cands {
		if _, err := prog.Run(&ebpf.RunOptions{Context: []uint64{c}}); err != nil {
			return fmt.Errorf("running calib_probe: %w", err)
		}
		var got [7][16]int8
		if err := names.Get(&got); err != nil {
			return err
		}
		matched := 0
		for i, want := range calibrationNames {
			if cString(got[i][:]) == want {
				matched++
			}
		}
		// Merged caches may carry another cache's name; three exact names
		// cannot come from a wrong layout.
		if matched >= 3 {
			return t.vars.VmPageC.Set(c)
		}
		best = max(best, matched)
	}
	return fmt.Errorf("none of %d linear-map layouts (%s) matched this kernel (best: %d of %d objects)", len(cands), how, best, len(calibrationNames))
}

func cString(b []int8) string {
	var sb strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		sb.WriteByte(byte(c))
	}
	return sb.String()
}

// linearMapCandidates lists the values vm_page_c may take on this machine,
// most likely first, and says where they came from.
func (t *Tracer) linearMapCandidates(shift uint, sz uint64) ([]uint64, string) {
	c := func(vmemmap, pageOffset uint64) uint64 { return vmemmap - (pageOffset>>shift)*sz }
	var out []uint64
	var how []string
	switch runtime.GOARCH {
	case "amd64":
		syms := kallsymsAddrs()
		if syms["page_offset_base"] != 0 && syms["vmemmap_base"] != 0 {
			pob, err1 := t.readKernelWord(syms["page_offset_base"])
			vmb, err2 := t.readKernelWord(syms["vmemmap_base"])
			if err1 == nil && err2 == nil && pob != 0 && vmb != 0 {
				out = append(out, c(vmb, pob))
				how = append(how, "kallsyms")
			}
		}
		if pobs, vmbs, err := kcoreBases(sz, shift); err == nil {
			for _, pob := range pobs {
				for _, vmb := range vmbs {
					out = append(out, c(vmb, pob))
				}
			}
			how = append(how, "/proc/kcore")
		}
		// Without KASLR's memory randomisation: 4- and 5-level paging.
		out = append(out, c(0xffffea0000000000, 0xffff888000000000), c(0xffd4000000000000, 0xff11000000000000))
		how = append(how, "fixed x86-64 layouts")
	case "arm64":
		// PAGE_OFFSET = -(1 << VA_BITS); the vmemmap's start moved over the
		// versions (5.4-5.10, 5.11-6.8, 6.9+). With the linear map and the
		// vmemmap both offset by memstart_addr, the struct page of a is
		// VMEMMAP_START + ((a - PAGE_OFFSET) >> PAGE_SHIFT) * sizeof(struct
		// page), KASLR or not. STRUCT_PAGE_MAX_SHIFT is the log2 of
		// sizeof(struct page) rounded up.
		pageMaxShift := uint(0)
		for 1<<pageMaxShift < sz {
			pageMaxShift++
		}
		neg := func(bits uint) uint64 { return ^uint64(0) << bits } // -(1 << bits)
		for _, va := range []uint{48, 52, 47, 42, 39, 36} {
			vaMin := min(va, 48)
			pageOffset := neg(va)
			pageEnd := neg(vaMin - 1)
			for _, start := range []uint64{
				neg(va - (shift - pageMaxShift)),                                // 5.11-6.8
				neg(30) - ((pageEnd-pageOffset)>>shift)*sz,                      // 6.9+
				-((pageEnd - pageOffset) >> (shift - pageMaxShift)) - (2 << 20), // 5.4-5.10
			} {
				out = append(out, c(start, pageOffset))
			}
		}
		how = append(how, "arm64 layouts of VA_BITS 36 to 52")
	}
	return out, strings.Join(how, ", ")
}

// kcoreBases reads candidate linear-map and vmemmap bases from the program
// headers of /proc/kcore: a RAM segment's virtual minus physical address is
// the linear map's base; a vmemmap segment starts at the struct page of a
// RAM range's first page, rounded down to a page.
func kcoreBases(sz uint64, shift uint) (pobs, vmbs []uint64, err error) {
	f, err := elf.Open("/proc/kcore")
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var ramStarts []uint64 // physical
	var vmemmaps []uint64
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD {
			continue
		}
		if p.Paddr != ^uint64(0) && p.Paddr != 0 && p.Vaddr > p.Paddr {
			pob := p.Vaddr - p.Paddr
			if pob&((1<<30)-1) == 0 && !containsU64(pobs, pob) { // the linear map is 1 GiB aligned
				pobs = append(pobs, pob)
				ramStarts = append(ramStarts, p.Paddr)
			}
		} else if p.Paddr == ^uint64(0) {
			vmemmaps = append(vmemmaps, p.Vaddr)
		}
	}
	pageMask := ^(uint64(1)<<shift - 1)
	for _, v := range vmemmaps {
		for _, ram := range ramStarts {
			off := ((ram >> shift) * sz) & pageMask
			if vmb := v - off; !containsU64(vmbs, vmb) {
				vmbs = append(vmbs, vmb)
			}
		}
		if !containsU64(vmbs, v) {
			vmbs = append(vmbs, v)
		}
	}
	if len(pobs) == 0 || len(vmbs) == 0 {
		return nil, nil, errors.New("no RAM or vmemmap segments in /proc/kcore")
	}
	return pobs, vmbs, nil
}

func containsU64(s []uint64, v uint64) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// readKernelWord reads 8 bytes of kernel memory with the read_word program.
func (t *Tracer) readKernelWord(addr uint64) (uint64, error) {
	prog := t.coll.Programs["read_word"]
	if prog == nil {
		return 0, errors.New("read_word was not loaded")
	}
	return t.runProbe(prog, addr)
}

// runProbe runs a test-run program and returns what it left in probe_result.
func (t *Tracer) runProbe(prog *ebpf.Program, args ...uint64) (uint64, error) {
	if _, err := prog.Run(&ebpf.RunOptions{Context: args}); err != nil {
		return 0, err
	}
	var v uint64
	err := t.vars.ProbeResult.Get(&v)
	return v, err
}
