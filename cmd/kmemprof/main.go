// Command kmemprof profiles kernel memory: it traces the kernel's allocations
// and frees for a while and writes the allocations still outstanding, by
// kernel call stack, as a pprof profile.
//
// Run `kmemprof --help` for the commands and `kmemprof record --help` for
// the capture options.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
)

// version and commit are set by the Makefile (-ldflags "-X main.version=...
// -X main.commit=..."); commit falls back to what go build stamped.
var (
	version = "dev"
	commit  = ""
)

const mainUsage = `kmemprof - find kernel memory leaks by call stack

kmemprof traces the kernel's allocations and frees for a while and writes the
allocations still outstanding at the end, by kernel call stack, as a pprof
profile: open it with 'go tool pprof' (top, flame graph, diffs, tag filters).

Usage:
  kmemprof <command> [options]

Commands:
  record    trace kernel allocations and write a profile (needs root)
  top       live view of the slab caches: allocs, frees, diff, in-use, growth (needs root)
  selftest  check that kmemprof finds a known leak on this kernel (needs root)
  report    print the summary of a saved profile (top rows, counters, losses)
  serve     open a saved profile in the pprof web UI (flame graph, top, graph)
  tags      find the driver that owns a Windows pool tag (pooltag.txt, *.sys scan)
  convert   turn a Windows .etl trace with pool events into a profile (any OS)
  agent     trace continuously; push profiles to Pyroscope, serve Prometheus metrics (needs root)
  version   print the version
  completion  print a bash or zsh completion script
  man       print the manual page (roff): kmemprof man | man -l -
  help      show help for a command: kmemprof help record

Examples:
  sudo kmemprof record -d 30s                  # 30 s capture to kmem.pb.gz
  sudo kmemprof record --pid 1234 -o app.pb.gz # only allocations by process 1234
  kmemprof report kmem.pb.gz                   # the summary again, later
  kmemprof serve kmem.pb.gz                    # flame graph in a browser
  go tool pprof -top kmem.pb.gz                # heaviest in-use stacks
  go tool pprof -http=127.0.0.1:8080 kmem.pb.gz

Run 'kmemprof record --help' for every capture option and how to read the output.
`

const versionUsage = `Usage: kmemprof version   (also --version, -V)

Prints kmemprof's version, the commit it was built from, and the Go toolchain
and platform it was built for.
`

// exit codes
const (
	exitOK    = 0
	exitError = 1 // the command ran and failed
	exitUsage = 2 // bad command line
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line args and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, mainUsage)
		return exitUsage
	}
	switch cmd := args[0]; cmd {
	case "record":
		return runRecord(args[1:], stdout, stderr)
	case "selftest":
		return runSelftest(args[1:], stdout, stderr)
	case "top":
		return runTop(args[1:], os.Stdin, stdout, stderr)
	case selftestChildCmd:
		return selftestChild(args[1:], stdout)
	case execShimCmd:
		return execShim(args[1:])
	case "tags":
		return runTags(args[1:], stdout, stderr)
	case "convert":
		return runConvert(args[1:], stdout, stderr)
	case "agent":
		return runAgent(args[1:], stdout, stderr)
	case "serve":
		return runServe(args[1:], stdout, stderr)
	case "report":
		return runReport(args[1:], stdout, stderr)
	case "completion":
		return runCompletion(args[1:], stdout, stderr)
	case "man":
		return runMan(args[1:], stdout, stderr)
	case "version", "--version", "-version", "-V":
		if len(args) > 1 && isHelp(args[1]) {
			fmt.Fprint(stdout, versionUsage)
			return exitOK
		}
		if len(args) > 1 {
			return report(stderr, "version", usagef("takes no arguments, got %q", args[1]))
		}
		fmt.Fprintln(stdout, versionString())
		return exitOK
	case "help", "-h", "--help", "-help":
		// help CMD is CMD --help; help of help (or -h -h) is this page.
		if len(args) > 1 && !isHelp(args[1]) {
			return run([]string{args[1], "--help"}, stdout, stderr)
		}
		fmt.Fprint(stdout, mainUsage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "kmemprof: unknown command %q\nRun 'kmemprof --help' for the list of commands.\n", cmd)
		return exitUsage
	}
}

func isHelp(arg string) bool {
	switch arg {
	case "help", "-h", "--help", "-help":
		return true
	}
	return false
}

// Errors of the flag package, reworded the way the help spells options:
// --long, -s.
var (
	flagUndefined = regexp.MustCompile(`^flag provided but not defined: -+(.*)$`)
	flagNoValue   = regexp.MustCompile(`^flag needs an argument: -+(.*)$`)
	flagBadValue  = regexp.MustCompile(`^invalid (?:boolean )?value "(.*)" for (?:flag )?-+([^:]*): (.*)$`)
)

// optionName spells a flag's name as the help does.
func optionName(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// flagError turns an error of flag.FlagSet.Parse into a usageError that
// names the option as the help spells it.
func flagError(err error) error {
	msg := err.Error()
	if m := flagUndefined.FindStringSubmatch(msg); m != nil {
		return usagef("unknown option %s", optionName(m[1]))
	}
	if m := flagNoValue.FindStringSubmatch(msg); m != nil {
		return usagef("option %s needs a value", optionName(m[1]))
	}
	if m := flagBadValue.FindStringSubmatch(msg); m != nil {
		why := m[3]
		switch why {
		case "parse error":
			why = "not a number"
			if strings.Contains(msg, "boolean") {
				why = "want true or false"
			}
		case "value out of range":
			why = "out of range"
		}
		return usagef("bad value %q for %s: %s", m[1], optionName(m[2]), why)
	}
	return usagef("%s", msg)
}

// usageError is a bad command line: it is printed with a pointer to --help
// and exits with exitUsage.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error {
	return &usageError{fmt.Sprintf(format, a...)}
}

// report prints err for command cmd and returns the exit code it calls for.
func report(stderr io.Writer, cmd string, err error) int {
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "kmemprof %s: %s\nRun 'kmemprof %s --help' for usage.\n", cmd, ue.msg, cmd)
		return exitUsage
	}
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	fmt.Fprintf(stderr, "kmemprof %s: %v\n", cmd, err)
	return exitError
}

// parseInterspersed parses args with fs, letting options follow positional
// arguments (flag stops at the first non-flag one, so it parses again after
// each); after "--" everything is positional. It returns the positional
// arguments, or a usageError.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	rest := args
	for len(rest) > 0 {
		if err := fs.Parse(rest); err != nil {
			return nil, flagError(err)
		}
		left := fs.Args()
		if consumed := len(rest) - len(left); consumed > 0 && rest[consumed-1] == "--" {
			pos = append(pos, left...)
			break
		}
		if len(left) == 0 {
			break
		}
		pos = append(pos, left[0])
		rest = left[1:]
	}
	return pos, nil
}

// versionString is the version (from git describe, set at build time), the
// commit it was built from and the toolchain.
func versionString() string {
	commit := commit
	if bi, ok := debug.ReadBuildInfo(); ok && commit == "" {
		var rev, modified string
		for _, st := range bi.Settings {
			switch st.Key {
			case "vcs.revision":
				rev = st.Value
			case "vcs.modified":
				modified = st.Value
			}
		}
		if rev != "" {
			commit = rev
			if modified == "true" {
				commit += " (modified)"
			}
		}
	}
	if commit == "" {
		commit = "unknown"
	}
	return fmt.Sprintf("kmemprof %s\ncommit %s\n%s %s/%s", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
