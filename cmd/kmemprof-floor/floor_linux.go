package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

func run(args []string, stdout, stderr io.Writer) error {
	o, err := parse(args, stdout)
	if o == nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	closeAll, err := attach(o)
	if err != nil {
		return err
	}
	defer closeAll()
	fmt.Fprintf(stderr, "attached (backups %v, walk %v); Ctrl-C detaches\n", o.backups, o.walk)
	<-sig
	return nil
}

// attach loads and attaches the programs o asks for and returns what
// detaches them.
func attach(o *options) (func(), error) {
	var closers []func() error
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	var stacks *ebpf.Map
	if o.walk {
		var err error
		stacks, err = ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.StackTrace, KeySize: 4, ValueSize: 127 * 8, MaxEntries: 1 << 16})
		if err != nil {
			return nil, fmt.Errorf("stack map: %w", err)
		}
		closers = append(closers, stacks.Close)
	}
	hooks := []struct {
		tp   string
		free bool
	}{{"kmem_cache_alloc", false}, {"kmalloc", false}, {"kmem_cache_free", true}, {"kfree", true}}
	for _, h := range hooks {
		n := 1
		if h.free && o.backups {
			n = 2
		}
		for range n {
			insns := asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}
			if o.walk && !h.free {
				insns = asm.Instructions{
					asm.LoadMapPtr(asm.R2, stacks.FD()),
					asm.Mov.Imm(asm.R3, 0),
					asm.FnGetStackid.Call(),
					asm.Mov.Imm(asm.R0, 0),
					asm.Return(),
				}
			}
			prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "floor", Type: ebpf.RawTracepoint, License: "GPL", Instructions: insns})
			if err != nil {
				closeAll()
				return nil, fmt.Errorf("loading a program for %s: %w", h.tp, err)
			}
			closers = append(closers, prog.Close)
			l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: h.tp, Program: prog})
			if err != nil {
				closeAll()
				return nil, fmt.Errorf("attaching to %s: %w", h.tp, err)
			}
			closers = append(closers, l.Close)
		}
	}
	return closeAll, nil
}
