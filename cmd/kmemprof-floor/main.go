// Command kmemprof-floor attaches the least a raw-tracepoint tracer of the
// slab allocator can attach, so that the overhead harness can time it beside
// kmemprof: the part of the cost that belongs to the kernel's dispatch of a
// BPF program and not to any program's work.
//
//	kmemprof-floor                 one empty program on each of kmem_cache_alloc,
//	                               kmalloc, kmem_cache_free and kfree
//	kmemprof-floor --backups       and a second empty program on each free
//	                               tracepoint, as kmemprof's default mode attaches
//	                               to catch frees nested in its free program
//	kmemprof-floor --backups --walk
//	                               the allocation programs walk the kernel stack
//	                               (bpf_get_stackid) and do nothing else: the
//	                               floor of any tool that walks every allocation
//
// It holds the programs until SIGINT or SIGTERM. Linux only; needs root.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
)

const usage = `Usage: kmemprof-floor [--backups] [--walk]

Attaches empty raw_tp programs to the four slab tracepoints (the kernel's
dispatch cost alone) and holds them until interrupted, for the overhead
harness (make bench-overhead). --backups adds a second program on each free
tracepoint; --walk makes the allocation programs walk the kernel stack.
`

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "kmemprof-floor:", err)
		os.Exit(1)
	}
}

type options struct {
	backups, walk bool
}

func parse(args []string, stdout io.Writer) (*options, error) {
	fs := flag.NewFlagSet("kmemprof-floor", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o := &options{}
	fs.BoolVar(&o.backups, "backups", false, "")
	fs.BoolVar(&o.walk, "walk", false, "")
	help := fs.Bool("help", false, "")
	fs.BoolVar(help, "h", false, "")
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, usage)
	}
	if *help {
		fmt.Fprint(stdout, usage)
		return nil, nil
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q\n%s", fs.Arg(0), usage)
	}
	return o, nil
}
