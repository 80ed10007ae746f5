package etw

import "github.com/kmemprof/kmemprof/tracer"

// AddressMap resolves a kernel address to the image it lies in and its
// offset there; *symbolize.DriverMap is one.
type AddressMap interface {
	Lookup(addr uint64) (name string, offset uint64, ok bool)
}

// DriverSymbolizer returns a tracer.Symbolizer that knows each address's
// image: the profile names the frame by image and offset,
// "myleak.sys+0x1234", with the image as the frame's Module. Without the
// drivers' PDBs that is as precise as Windows kernel addresses get.
// Addresses no image covers are left unresolved. The symbolizer is as safe
// for concurrent use as m.
func DriverSymbolizer(m AddressMap) tracer.Symbolizer {
	return driverSymbolizer{m}
}

type driverSymbolizer struct{ m AddressMap }

func (s driverSymbolizer) Lookup(pc uint64) (tracer.Symbol, bool) {
	name, off, ok := s.m.Lookup(pc)
	if !ok {
		return tracer.Symbol{}, false
	}
	return tracer.Symbol{Start: pc - off, Module: name}, true
}
