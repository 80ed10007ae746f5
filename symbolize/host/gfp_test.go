package host

import "testing"

func TestGFPNamer(t *testing.T) {
	g := NewGFPNamer(DefaultGFPBits)
	for _, tc := range []struct {
		gfp  uint32
		want string
	}{
		{0, "none"},
		{0xcc0, "GFP_KERNEL"},
		{0xcc0 | 1<<18, "GFP_KERNEL|__GFP_COMP"},
		{0xcc0 | 1<<22, "GFP_KERNEL_ACCOUNT"},
		{1<<5 | 1<<11, "GFP_ATOMIC"},
		{1<<5 | 1<<11 | 1<<8, "GFP_ATOMIC|__GFP_ZERO"},
		{0x140dca, "GFP_HIGHUSER_MOVABLE|__GFP_ZERO|__GFP_COMP"},
		{1 << 30, "0x40000000"},
		{1<<13 | 1<<30, "__GFP_NOWARN|0x40000000"},
	} {
		if got := g.Name(tc.gfp); got != tc.want {
			t.Errorf("Name(%#x) = %q, want %q", tc.gfp, got, tc.want)
		}
	}
}
