package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/kmemprof/kmemprof/bpf"
)

const selftestUsage = `Usage: kmemprof selftest [--attach MODE] [-n N]

Check that kmemprof works on this kernel: start a capture, make a known
kernel leak in a child process (N eventfds, held open: each is a file, a
dentry, an eventfd context and an LSM blob, allocated through do_eventfd),
check that the heaviest in-use stack is that leak with the right count and a
well-formed stack, release it, and check that it is gone. Once the child has
exited, the self-check compares what kmemprof tracks with the kernel's own
counts (/proc/slabinfo), programs still attached: it fails if more objects are
tracked in a cache than the kernel holds (frees missed) or a cache grew by more
than is tracked (allocations missed). Prints PASS or FAIL for each check and
exits 0 only when all pass. Needs root.

Options:
      --attach MODE   attach mode to test: auto (default), raw_tp, tp_btf,
                      tracepoint, fentry or kprobe; a mode the kernel cannot
                      offer fails the attach check with the reason
  -n N                eventfds the child holds (default 5000, at most 16000)
  -h, --help          show this help
`

type selftestOptions struct {
	mode bpf.Mode
	n    int
}

func parseSelftest(args []string, stdout io.Writer) (*selftestOptions, error) {
	fs := flag.NewFlagSet("selftest", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var attach string
	var n int
	var help bool
	fs.StringVar(&attach, "attach", "auto", "")
	fs.IntVar(&n, "n", 5000, "")
	fs.BoolVar(&help, "help", false, "")
	fs.BoolVar(&help, "h", false, "")
	if err := fs.Parse(args); err != nil {
		return nil, flagError(err)
	}
	if help {
		fmt.Fprint(stdout, selftestUsage)
		return nil, flag.ErrHelp
	}
	if fs.NArg() > 0 {
		return nil, usagef("unexpected argument %q", fs.Arg(0))
	}
	mode, err := bpf.ParseMode(attach)
	if err != nil {
		return nil, usagef("bad --attach: %v", err)
	}
	if n < 100 || n > 16000 {
		return nil, usagef("bad -n %d: want 100 to 16000 eventfds", n)
	}
	return &selftestOptions{mode: mode, n: n}, nil
}

func runSelftest(args []string, stdout, stderr io.Writer) int {
	o, err := parseSelftest(args, stdout)
	if err != nil {
		return report(stderr, "selftest", err)
	}
	if !selftest(o, stdout) {
		return exitError
	}
	return exitOK
}

// checker prints one line per check and remembers whether all passed.
type checker struct {
	w      io.Writer
	failed []string
	passed int
}

func (c *checker) check(ok bool, name, format string, a ...any) bool {
	verdict := "PASS"
	if !ok {
		verdict = "FAIL"
		c.failed = append(c.failed, name)
	} else {
		c.passed++
	}
	fmt.Fprintf(c.w, "%s  %-10s %s\n", verdict, name, fmt.Sprintf(format, a...))
	return ok
}

func (c *checker) note(name, format string, a ...any) {
	fmt.Fprintf(c.w, "NOTE  %-10s %s\n", name, fmt.Sprintf(format, a...))
}

func (c *checker) done() bool {
	if len(c.failed) > 0 {
		fmt.Fprintf(c.w, "selftest FAIL: %s (%d passed)\n", strings.Join(c.failed, ", "), c.passed)
		return false
	}
	fmt.Fprintf(c.w, "selftest PASS: all %d checks\n", c.passed)
	return true
}
