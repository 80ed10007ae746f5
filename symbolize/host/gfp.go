package host

import (
	"fmt"
	"strings"
)

// gfpComposites are the kernel's names for common combinations of GFP flags
// (include/linux/gfp_types.h), largest first, as show_gfp_flags prints them.
// Each is a list of single-flag names.
var gfpComposites = []struct {
	name  string
	flags []string
}{
	{"GFP_HIGHUSER_MOVABLE", []string{"DIRECT_RECLAIM", "KSWAPD_RECLAIM", "IO", "FS", "HARDWALL", "HIGHMEM", "MOVABLE"}},
	{"GFP_HIGHUSER", []string{"DIRECT_RECLAIM", "KSWAPD_RECLAIM", "IO", "FS", "HARDWALL", "HIGHMEM"}},
	{"GFP_USER", []string{"DIRECT_RECLAIM", "KSWAPD_RECLAIM", "IO", "FS", "HARDWALL"}},
	{"GFP_KERNEL_ACCOUNT", []string{"DIRECT_RECLAIM", "KSWAPD_RECLAIM", "IO", "FS", "ACCOUNT"}},
	{"GFP_KERNEL", []string{"DIRECT_RECLAIM", "KSWAPD_RECLAIM", "IO", "FS"}},
	{"GFP_NOFS", []string{"DIRECT_RECLAIM", "KSWAPD_RECLAIM", "IO"}},
	{"GFP_ATOMIC", []string{"HIGH", "KSWAPD_RECLAIM"}},
	{"GFP_NOIO", []string{"DIRECT_RECLAIM", "KSWAPD_RECLAIM"}},
	{"GFP_NOWAIT", []string{"KSWAPD_RECLAIM", "NOWARN"}},
}

// GFPNamer renders GFP flag words with the kernel's names, given each
// single flag's bit (name without the ___GFP_ prefix and _BIT suffix, e.g.
// "IO" → 6). Flags it has no name for are shown in hex.
type GFPNamer struct {
	bits map[string]uint
}

// NewGFPNamer returns a namer for the given flag bits.
func NewGFPNamer(bits map[string]uint) *GFPNamer { return &GFPNamer{bits: bits} }

// Name returns e.g. "GFP_KERNEL|__GFP_COMP", "none" for 0.
func (g *GFPNamer) Name(gfp uint32) string {
	if gfp == 0 {
		return "none"
	}
	mask := func(flags []string) (uint32, bool) {
		var m uint32
		for _, f := range flags {
			b, ok := g.bits[f]
			if !ok || b >= 32 {
				return 0, false
			}
			m |= 1 << b
		}
		return m, true
	}
	var parts []string
	left := gfp
	for _, c := range gfpComposites {
		if m, ok := mask(c.flags); ok && left&m == m {
			parts = append(parts, c.name)
			left &^= m
			break // one composite, as the kernel prints
		}
	}
	type nb struct {
		name string
		bit  uint
	}
	var singles []nb
	for name, b := range g.bits {
		singles = append(singles, nb{name, b})
	}
	// Stable order: by bit.
	for i := 1; i < len(singles); i++ {
		for j := i; j > 0 && singles[j].bit < singles[j-1].bit; j-- {
			singles[j], singles[j-1] = singles[j-1], singles[j]
		}
	}
	for _, s := range singles {
		if s.bit < 32 && left&(1<<s.bit) != 0 {
			parts = append(parts, "__GFP_"+s.name)
			left &^= 1 << s.bit
		}
	}
	if left != 0 {
		parts = append(parts, fmt.Sprintf("0x%x", left))
	}
	return strings.Join(parts, "|")
}

// DefaultGFPBits are the GFP flag bits of Linux 6.10 and later; kernels
// whose BTF describes them (enum ___GFP_*_BIT) override this.
var DefaultGFPBits = map[string]uint{
	"DMA": 0, "HIGHMEM": 1, "DMA32": 2, "MOVABLE": 3, "RECLAIMABLE": 4, "HIGH": 5,
	"IO": 6, "FS": 7, "ZERO": 8, "DIRECT_RECLAIM": 10, "KSWAPD_RECLAIM": 11,
	"WRITE": 12, "NOWARN": 13, "RETRY_MAYFAIL": 14, "NOFAIL": 15, "NORETRY": 16,
	"MEMALLOC": 17, "COMP": 18, "NOMEMALLOC": 19, "HARDWALL": 20, "THISNODE": 21,
	"ACCOUNT": 22, "ZEROTAGS": 23,
}
