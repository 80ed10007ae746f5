package symbolize

import (
	"cmp"
	"math"
	"slices"
	"sort"
	"strings"
)

// DriverMap maps kernel addresses to the drivers (kernel images) loaded
// there, as Windows reports them in its Image load, unload and rundown
// events. It resolves an address to "the driver and the offset into it",
// which is all that can be said of a Windows kernel address without the
// driver's PDB.
//
// The zero value is not ready to use; call NewDriverMap. A DriverMap is not
// safe for concurrent use, not even for concurrent Lookups: Lookup sorts
// the map lazily after changes.
type DriverMap struct {
	// drivers is sorted by base when sorted is true. Ranges never overlap:
	// Load removes the ranges a new one overlaps.
	drivers []driverRange
	sorted  bool
	// contested are the ranges where an image was loaded over another:
	// their addresses meant one image before and another after.
	contested []driverRange
}

// driverRange is one image: [base, end).
type driverRange struct {
	base, end uint64
	name      string
	unloaded  bool
}

// NewDriverMap returns an empty map.
func NewDriverMap() *DriverMap {
	return &DriverMap{sorted: true}
}

// Load records that the image at path is loaded at [base, base+size). Only
// the file's base name is kept ("ndis.sys" for
// `\SystemRoot\system32\drivers\ndis.sys`); both `\` and `/` separate path
// elements, and an empty path is named "[unnamed image]". Images already
// mapped over any part of the range are dropped: a driver unloaded without
// an event and another loaded in its place must not both claim the
// addresses. A range that would pass the end of the address space is cut
// there; an image of size 0 is ignored.
func (m *DriverMap) Load(base, size uint64, path string) {
	if size == 0 {
		return
	}
	end := base + size
	if end < base {
		end = math.MaxUint64
	}
	m.drivers = slices.DeleteFunc(m.drivers, func(d driverRange) bool {
		if d.base < end && base < d.end {
			m.contested = append(m.contested, driverRange{base: min(d.base, base), end: max(d.end, end)})
			return true
		}
		return false
	})
	// Appending to a sorted slice keeps it sorted when the new image lies
	// above every other, as rundowns in address order do.
	if n := len(m.drivers); n > 0 && m.drivers[n-1].base > base {
		m.sorted = false
	}
	m.drivers = append(m.drivers, driverRange{base: base, end: end, name: driverBaseName(path)})
}

// Unload marks the image loaded at base, if any, as unloaded. It keeps
// resolving addresses: stacks are symbolized after the capture, and a
// driver that leaks and is then unloaded (the classic case) must keep its
// name in the stacks walked while it was loaded. An image loaded later
// over any part of its range replaces it.
func (m *DriverMap) Unload(base uint64) {
	for i := range m.drivers {
		if m.drivers[i].base == base {
			m.drivers[i].unloaded = true
		}
	}
}

// Overlapped lists the [base, end) of the images an image loaded at
// [base, base+size) would replace (Load drops them).
func (m *DriverMap) Overlapped(base, size uint64) [][2]uint64 {
	end := base + size
	if end < base {
		end = math.MaxUint64
	}
	var out [][2]uint64
	for _, d := range m.drivers {
		if d.base < end && base < d.end {
			out = append(out, [2]uint64{d.base, d.end})
		}
	}
	return out
}

// Contested reports whether addr lies where an image was loaded over
// another during the map's life: a name looked up now may not be the one
// the address had earlier, so stacks through it are named when they are
// seen (see tracer.Snapshot.FrameSymbols).
func (m *DriverMap) Contested(addr uint64) bool {
	for _, c := range m.contested {
		if c.base <= addr && addr < c.end {
			return true
		}
	}
	return false
}

// Len returns how many images are loaded (unloaded ones not counted).
func (m *DriverMap) Len() int {
	n := 0
	for _, d := range m.drivers {
		if !d.unloaded {
			n++
		}
	}
	return n
}

// Lookup returns the base name of the image that addr lies in and addr's
// offset from the image's base, whether the image is still loaded or was
// unloaded since. It reports ok=false, with "" and 0, when no image covers
// addr. Like Kallsyms.Lookup it resolves addr as given:
// for a return address from a stack walk, look up addr-1.
func (m *DriverMap) Lookup(addr uint64) (name string, offset uint64, ok bool) {
	if !m.sorted {
		slices.SortFunc(m.drivers, func(a, b driverRange) int { return cmp.Compare(a.base, b.base) })
		m.sorted = true
	}
	ds := m.drivers
	i := sort.Search(len(ds), func(i int) bool { return ds[i].base > addr }) - 1
	if i < 0 || addr >= ds[i].end {
		return "", 0, false
	}
	return ds[i].name, addr - ds[i].base, true
}

// unnamedImage names an image whose path was empty.
const unnamedImage = "[unnamed image]"

// driverBaseName returns the last element of a Windows or POSIX path: the
// whole path when it ends in a separator, and unnamedImage for "".
func driverBaseName(path string) string {
	name := path
	if i := strings.LastIndexAny(path, `\/`); i >= 0 && i+1 < len(path) {
		name = path[i+1:]
	}
	if name == "" {
		return unnamedImage
	}
	return name
}
