package symbolize

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

type driverLoad struct {
	base, size uint64
	path       string
	unloaded   bool
}

func TestDriverMapLookup(t *testing.T) {
	const nt, ndis, leak = 0xfffff80000000000, 0xfffff80002000000, 0xfffff80003000000
	loads := []driverLoad{
		{leak, 0x10000, `\??\C:\drivers\myleak.sys`, false},
		{nt, 0x1000000, `\SystemRoot\system32\ntoskrnl.exe`, false},
		{ndis, 0x100000, `\SystemRoot\system32\drivers\ndis.sys`, false},
	}
	m := NewDriverMap()
	for _, l := range loads {
		m.Load(l.base, l.size, l.path)
	}
	for _, tc := range []struct {
		name       string
		addr       uint64
		wantName   string
		wantOffset uint64
		wantOK     bool
	}{
		{"kernel base", nt, "ntoskrnl.exe", 0, true},
		{"inside kernel", nt + 0x2a1b30, "ntoskrnl.exe", 0x2a1b30, true},
		{"last kernel byte", nt + 0xffffff, "ntoskrnl.exe", 0xffffff, true},
		{"gap after kernel", nt + 0x1000000, "", 0, false},
		{"ndis", ndis + 0x5678, "ndis.sys", 0x5678, true},
		{"myleak", leak + 0x1234, "myleak.sys", 0x1234, true},
		{"past myleak", leak + 0x10000, "", 0, false},
		{"below everything", 0x1000, "", 0, false},
		{"user address", 0x00007ff700001000, "", 0, false},
		{"top of address space", math.MaxUint64, "", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name, off, ok := m.Lookup(tc.addr)
			if name != tc.wantName || off != tc.wantOffset || ok != tc.wantOK {
				t.Errorf("Lookup(%#x) = %q, %#x, %v; want %q, %#x, %v", tc.addr, name, off, ok, tc.wantName, tc.wantOffset, tc.wantOK)
			}
		})
	}
	if m.Len() != 3 {
		t.Errorf("Len() = %d, want 3", m.Len())
	}
}

func TestDriverMapChanges(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(m *DriverMap)
		addr   uint64
		want   string // "" for no match
		len    int
	}{
		// Unloaded images keep their names for stacks walked while loaded.
		{"unload", func(m *DriverMap) { m.Unload(0x2000) }, 0x2010, "b.sys", 2},
		{"load over an unloaded range replaces it", func(m *DriverMap) { m.Unload(0x2000); m.Load(0x2800, 0x100, "n.sys") }, 0x2010, "", 3},
		{"unload unknown base", func(m *DriverMap) { m.Unload(0x2001) }, 0x2010, "b.sys", 3},
		{"load over a range replaces it", func(m *DriverMap) { m.Load(0x2000, 0x1000, `C:\new.sys`) }, 0x2010, "new.sys", 3},
		{"load overlapping two ranges replaces both", func(m *DriverMap) { m.Load(0x1800, 0x1000, `new.sys`) }, 0x1100, "", 2},
		{"overlap at both ends", func(m *DriverMap) { m.Load(0x2fff, 0x10, `new.sys`) }, 0x2000, "", 2},
		{"adjacent keeps neighbours", func(m *DriverMap) { m.Load(0x4000, 0x1000, `d.sys`) }, 0x3fff, "c.sys", 4},
		{"load below keeps order", func(m *DriverMap) { m.Load(0x100, 0x100, `z.sys`) }, 0x150, "z.sys", 4},
		{"zero size ignored", func(m *DriverMap) { m.Load(0x2000, 0, `new.sys`) }, 0x2000, "b.sys", 3},
		{"range past the end is cut", func(m *DriverMap) { m.Load(math.MaxUint64-0xf, 0x100, `top.sys`) }, math.MaxUint64 - 1, "top.sys", 4},
		{"reload after unload", func(m *DriverMap) { m.Unload(0x1000); m.Load(0x1000, 0x800, "a2.sys") }, 0x17ff, "a2.sys", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewDriverMap()
			m.Load(0x1000, 0x1000, "a.sys")
			m.Load(0x2000, 0x1000, "b.sys")
			m.Load(0x3000, 0x1000, "c.sys")
			m.Lookup(0) // sort, so that changes must re-sort
			tc.change(m)
			name, _, ok := m.Lookup(tc.addr)
			if name != tc.want || ok != (tc.want != "") {
				t.Errorf("Lookup(%#x) = %q, %v; want %q", tc.addr, name, ok, tc.want)
			}
			if m.Len() != tc.len {
				t.Errorf("Len() = %d, want %d", m.Len(), tc.len)
			}
		})
	}
}

func TestDriverBaseName(t *testing.T) {
	for _, tc := range []struct{ path, want string }{
		{`\SystemRoot\system32\drivers\ndis.sys`, "ndis.sys"},
		{`\??\C:\drivers\myleak.sys`, "myleak.sys"},
		{`C:/tmp/x.sys`, "x.sys"},
		{`ntoskrnl.exe`, "ntoskrnl.exe"},
		{`\Device\HarddiskVolume3\`, `\Device\HarddiskVolume3\`},
		{``, "[unnamed image]"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			if got := driverBaseName(tc.path); got != tc.want {
				t.Errorf("driverBaseName(%q) = %q, want %q", tc.path, got, tc.want)
			}
		})
	}
}

// TestDriverMapRandom checks Lookup against a linear scan after random
// loads and unloads in random order: an unloaded image keeps resolving
// until a load overlaps it.
func TestDriverMapRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	m := NewDriverMap()
	var live []driverLoad
	loaded := 0
	for i := range 2000 {
		if len(live) > 0 && r.IntN(4) == 0 {
			j := r.IntN(len(live))
			m.Unload(live[j].base)
			if !live[j].unloaded {
				loaded--
			}
			for k := range live {
				if live[k].base == live[j].base {
					live[k].unloaded = true
				}
			}
		} else {
			l := driverLoad{base: uint64(r.IntN(1 << 16)), size: uint64(1 + r.IntN(512)), path: fmt.Sprintf(`\d\%d.sys`, i)}
			m.Load(l.base, l.size, l.path)
			kept := live[:0]
			for _, o := range live {
				if o.base >= l.base+l.size || l.base >= o.base+o.size {
					kept = append(kept, o)
				}
			}
			live = append(kept, l)
			loaded = 0
			for _, o := range live {
				if !o.unloaded {
					loaded++
				}
			}
		}
		if m.Len() != loaded {
			t.Fatalf("step %d: Len() = %d, want %d loaded", i, m.Len(), loaded)
		}
		addr := uint64(r.IntN(1<<16 + 512))
		want, wantOff := "", uint64(0)
		for _, o := range live {
			if o.base <= addr && addr < o.base+o.size {
				want, wantOff = driverBaseName(o.path), addr-o.base
			}
		}
		if name, off, ok := m.Lookup(addr); name != want || off != wantOff || ok != (want != "") {
			t.Fatalf("step %d: Lookup(%#x) = %q, %#x, %v; want %q, %#x", i, addr, name, off, ok, want, wantOff)
		}
	}
}

func BenchmarkDriverMapLookup(b *testing.B) {
	m := NewDriverMap()
	for i := range 300 {
		m.Load(0xfffff80000000000+uint64(i)<<24, 1<<20, fmt.Sprintf("d%d.sys", i))
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		m.Lookup(0xfffff80000000000 + uint64(i%300)<<24 + 0x1234)
	}
}
