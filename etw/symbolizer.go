package etw

import (
	"fmt"

	"github.com/kmemprof/kmemprof/tracer"
)

// AddressMap resolves a kernel address to the image it lies in and its
// offset there; *symbolize.DriverMap is one.
type AddressMap interface {
	Lookup(addr uint64) (name string, offset uint64, ok bool)
}

// DriverSymbolizer returns a tracer.Symbolizer that names each address by
// its image and offset, "myleak.sys+0x1234", with the image as the frame's
// Module: without the drivers' PDBs that is as precise as Windows kernel
// addresses get. A return address (leaf=false) is looked up as addr-1, so
// that a call ending an image is attributed to it; the name still shows
// addr's own offset. Addresses no image covers are left unresolved. The
// symbolizer is as safe for concurrent use as m.
func DriverSymbolizer(m AddressMap) tracer.Symbolizer {
	return driverSymbolizer{m}
}

type driverSymbolizer struct{ m AddressMap }

func (s driverSymbolizer) Symbolize(addr uint64, leaf bool) tracer.Frame {
	look := addr
	if !leaf && look > 0 {
		look--
	}
	name, off, ok := s.m.Lookup(look)
	if !ok {
		return tracer.Frame{Addr: addr}
	}
	off += addr - look
	return tracer.Frame{Addr: addr, Function: fmt.Sprintf("%s+%#x", name, off), Offset: off, Module: name}
}
