package host

import (
	"strings"

	"github.com/cilium/ebpf/btf"
)

// KernelGFPNamer returns a namer with the running kernel's GFP flag bits,
// read from its BTF (enum ___GFP_*_BIT, Linux 6.10+), or DefaultGFPBits.
func KernelGFPNamer() *GFPNamer {
	bits := map[string]uint{}
	if spec, err := btf.LoadKernelSpec(); err == nil {
		iter := spec.All()
		for typ := range iter {
			e, ok := typ.(*btf.Enum)
			if !ok {
				continue
			}
			for _, v := range e.Values {
				if name, ok := strings.CutPrefix(v.Name, "___GFP_"); ok && strings.HasSuffix(name, "_BIT") && name != "LAST_BIT" {
					bits[strings.TrimSuffix(name, "_BIT")] = uint(v.Value)
				}
			}
			if len(bits) > 0 {
				break
			}
		}
	}
	if len(bits) == 0 {
		bits = DefaultGFPBits
	}
	return NewGFPNamer(bits)
}
