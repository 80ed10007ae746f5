package host

import "testing"

func TestKernelGFPNamer(t *testing.T) {
	g := KernelGFPNamer()
	if got := g.Name(0xcc0); got != "GFP_KERNEL" {
		t.Errorf("GFP_KERNEL (0xcc0 on 6.x) named %q", got)
	}
}
