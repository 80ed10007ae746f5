package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/kmemprof/kmemprof/symbolize"
)

const tagsUsage = `Usage: kmemprof tags [--pooltag FILE] [--drivers DIR] TAG...

Find out which driver owns a Windows pool tag.

Every allocation from the Windows kernel pools (paged and nonpaged) carries a
4-character tag chosen by the code that allocated it: "Ntfx" is NTFS, "Proc"
process objects. poolmon, WinDbg's !poolused and 'kmemprof record' (label
"tag") report kernel memory by tag; this command tells whose tag it is, two
ways:

  pooltag.txt   Microsoft's list of known tags, one per line:
                  <Tag> - <binary> - <Description>
                It ships with the Debugging Tools for Windows (Windows SDK or
                WDK) as triage\pooltag.txt, for example
                C:\Program Files (x86)\Windows Kits\10\Debuggers\x64\triage\pooltag.txt
                Entries such as "Afd?" or "Acp*" match families of tags; they
                are listed after the exact entries.
  driver scan   A driver passes its tag to ExAllocatePoolWithTag as a 4-byte
                constant, so the tag's bytes are in the driver's file (C source
                writes the tag reversed: 'kaeL' for Leak). Every *.sys file in
                DIR is searched for them. Third-party drivers are rarely in
                pooltag.txt; this is how to find them. A hit is a lead, not
                proof: four bytes can occur by chance. Tags of the kernel itself
                (owner "nt!..." in pooltag.txt) are in ntoskrnl.exe, not in DIR.

Options:
      --pooltag FILE   pooltag.txt to look the tags up in (default: none)
      --drivers DIR    directory whose *.sys files are searched (default:
                       %SystemRoot%\System32\drivers on Windows, none
                       elsewhere; --drivers "" skips the scan)
  -h, --help           show this help

Tags are case-sensitive. A tag shorter than 4 characters is padded with
spaces, as the kernel does: "Cc" is the tag "Cc  ". Quote tags that hold
spaces. Options may come before or after the tags; after "--" every argument
is a tag.

Examples:
  kmemprof tags Ndu                     search this machine's drivers (Windows)
  kmemprof tags --pooltag "C:\Program Files (x86)\Windows Kits\10\Debuggers\x64\triage\pooltag.txt" Ntfx Proc Cc
  kmemprof tags --pooltag pooltag.txt --drivers ./drivers-copy Leak
                                        any OS, with a copy of a machine's drivers

Output, one block per tag:
  Leak  pooltag.txt: myleak.sys - Leaky test driver
        drivers:     myleak.sys

Driver files that cannot be read, and lines of FILE that are not understood,
are reported on stderr; the answer for the rest is still printed.
`

// pooltagPath is where the Debugging Tools for Windows of the Windows 10
// and 11 SDKs install pooltag.txt on x64.
const pooltagPath = `C:\Program Files (x86)\Windows Kits\10\Debuggers\x64\triage\pooltag.txt`

// tagsOptions is a parsed `kmemprof tags` command line.
type tagsOptions struct {
	tags    []string // distinct, in command-line order
	pooltag string   // "" for none
	drivers string   // "" for no scan
}

// parseTags parses the tags command line. Bad input is a usageError;
// --help returns flag.ErrHelp after printing the usage to stdout. getenv
// and goos choose the default driver directory.
func parseTags(args []string, stdout io.Writer, goos string, getenv func(string) string) (*tagsOptions, error) {
	fs := flag.NewFlagSet("tags", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported by the caller, usage by -h
	var (
		o    tagsOptions
		help bool
	)
	fs.StringVar(&o.pooltag, "pooltag", "", "")
	fs.StringVar(&o.drivers, "drivers", defaultDriversDir(goos, getenv), "")
	fs.BoolVar(&help, "help", false, "")
	fs.BoolVar(&help, "h", false, "")

	tags, err := parseInterspersed(fs, args)
	if err != nil {
		return nil, err
	}
	if help {
		fmt.Fprint(stdout, tagsUsage)
		return nil, flag.ErrHelp
	}

	if len(tags) == 0 {
		return nil, usagef("no pool tag given: kmemprof tags [--pooltag FILE] [--drivers DIR] TAG...")
	}
	seen := make(map[string]bool)
	for _, t := range tags {
		switch {
		case t == "":
			return nil, usagef("empty tag: a pool tag is 1 to 4 characters")
		case len(t) > symbolize.PoolTagLen:
			return nil, usagef("tag %q is longer than 4 characters: a pool tag is 4 bytes (shorter ones are padded with spaces)", t)
		case !seen[t]:
			seen[t] = true
			o.tags = append(o.tags, t)
		}
	}

	explicit := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	if explicit["pooltag"] && o.pooltag == "" {
		return nil, usagef("--pooltag needs a file name")
	}
	if o.pooltag == "" && o.drivers == "" {
		return nil, usagef(`nothing to look in: give --pooltag FILE (triage\pooltag.txt of the Debugging Tools for Windows) or --drivers DIR (a directory of .sys driver files)`)
	}
	if o.drivers != "" {
		if st, err := os.Stat(o.drivers); err != nil || !st.IsDir() {
			if explicit["drivers"] {
				return nil, usagef("--drivers %s: not a directory", o.drivers)
			}
			return nil, fmt.Errorf("default driver directory %s: not a directory; choose one with --drivers DIR", o.drivers)
		}
	}
	return &o, nil
}

// defaultDriversDir is %SystemRoot%\System32\drivers on Windows and ""
// (no scan) elsewhere.
func defaultDriversDir(goos string, getenv func(string) string) string {
	if goos != "windows" {
		return ""
	}
	root := strings.TrimRight(getenv("SystemRoot"), `\/`)
	if root == "" {
		root = `C:\Windows`
	}
	// A 32-bit process on 64-bit Windows is redirected from System32 to
	// SysWOW64, which holds no kernel drivers; Sysnative is the real
	// System32 for it. PROCESSOR_ARCHITEW6432 is set only in such a process.
	if getenv("PROCESSOR_ARCHITEW6432") != "" {
		return root + `\Sysnative\drivers`
	}
	return root + `\System32\drivers`
}

func runTags(args []string, stdout, stderr io.Writer) int {
	o, err := parseTags(args, stdout, runtime.GOOS, os.Getenv)
	if err != nil {
		return report(stderr, "tags", err)
	}
	if err := lookupTags(o, stdout, stderr); err != nil {
		return report(stderr, "tags", err)
	}
	return exitOK
}

// lookupTags prints one block per tag: the pooltag.txt entries for it and
// the driver files that contain its bytes.
func lookupTags(o *tagsOptions, stdout, stderr io.Writer) error {
	var pt *symbolize.PoolTags
	if o.pooltag != "" {
		f, err := os.Open(o.pooltag)
		if err != nil {
			return fmt.Errorf("reading --pooltag file: %w", err)
		}
		pt, err = symbolize.ParsePoolTags(f)
		f.Close()
		if err != nil {
			if errors.Is(err, symbolize.ErrNoEntries) {
				return fmt.Errorf("--pooltag %s is not a pooltag.txt: %w", o.pooltag, err)
			}
			return fmt.Errorf("--pooltag %s: %w", o.pooltag, err)
		}
		if sk := pt.Skipped(); len(sk) > 0 {
			fmt.Fprintf(stderr, "kmemprof tags: note: %d line(s) of %s not understood and ignored (first: line %d, %s: %q)\n",
				len(sk), o.pooltag, sk[0].Line, sk[0].Reason, sk[0].Text)
		}
	}

	var found map[string][]string
	if o.drivers != "" {
		n, err := countDrivers(o.drivers)
		if err != nil {
			return err
		}
		if n == 0 {
			fmt.Fprintf(stderr, "kmemprof tags: warning: %s holds no .sys files\n", o.drivers)
		}
		found, err = symbolize.ScanDrivers(os.DirFS(o.drivers), o.tags)
		if found == nil {
			return fmt.Errorf("scanning %s: %w", o.drivers, err)
		}
		if err != nil {
			errs := []error{err}
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				errs = j.Unwrap()
			}
			fmt.Fprintf(stderr, "kmemprof tags: warning: %d driver file(s) in %s could not be read, so the answer may miss them:\n", len(errs), o.drivers)
			for _, e := range errs {
				fmt.Fprintf(stderr, "  %v\n", e)
			}
		}
	}

	const indent = "      "
	const cont = indent + "             " // under the text after "pooltag.txt: "
	for _, tag := range o.tags {
		first := fmt.Sprintf("%-4s  ", tag)
		if pt != nil {
			es := pt.Lookup(tag)
			if len(es) == 0 {
				fmt.Fprintf(stdout, "%spooltag.txt: not listed in %s\n", first, o.pooltag)
			}
			for i, e := range es {
				lead := first + "pooltag.txt: "
				if i > 0 {
					lead = cont
				}
				fmt.Fprintf(stdout, "%s%s\n", lead, describeEntry(e))
			}
			first = indent
		}
		if o.drivers != "" {
			if files := found[tag]; len(files) > 0 {
				fmt.Fprintf(stdout, "%sdrivers:     %s\n", first, strings.Join(files, ", "))
			} else {
				fmt.Fprintf(stdout, "%sdrivers:     no driver in %s contains it\n", first, o.drivers)
			}
		}
	}
	if pt == nil {
		fmt.Fprintf(stdout, "\nnote: no --pooltag FILE given, so only driver files were searched.\n"+
			"      pooltag.txt ships with the Debugging Tools for Windows as triage\\pooltag.txt,\n"+
			"      e.g. %s\n", pooltagPath)
	}
	if o.drivers == "" {
		fmt.Fprintf(stdout, "\nnote: no driver files searched: give --drivers DIR (a copy of %%SystemRoot%%\\System32\\drivers) to search them.\n")
	}
	return nil
}

// describeEntry formats a pooltag.txt entry as "binary - description",
// naming the pattern when a wildcard entry matched.
func describeEntry(e symbolize.Entry) string {
	var s string
	switch {
	case e.Binary != "" && e.Description != "":
		s = e.Binary + " - " + e.Description
	case e.Binary != "":
		s = e.Binary
	default:
		s = e.Description
	}
	if e.IsWildcard() {
		s += fmt.Sprintf(" (entry %q)", e.Tag)
	}
	return s
}

// countDrivers returns the number of driver files (by name) in dir.
func countDrivers(dir string) (int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("listing --drivers directory: %w", err)
	}
	n := 0
	for _, e := range entries {
		if !e.IsDir() && symbolize.IsDriverImageName(e.Name()) {
			n++
		}
	}
	return n, nil
}
