// Package symbolize resolves kernel addresses to symbol names.
//
// On Linux the source is /proc/kallsyms: [ParseKallsyms] reads that format
// from any io.Reader (so tests and other tools can feed fixtures or a
// System.map), and [LoadKallsyms] is the thin wrapper that opens the real
// file. The resulting [Kallsyms] table holds only text (code) symbols of the
// kernel image, of loaded modules, and of BPF JIT programs and trampolines
// (which kallsyms lists under the pseudo-module "[bpf]"). It resolves an
// address to the closest symbol at or below it with [Kallsyms.Lookup] and
// finds a symbol by name with [Kallsyms.Find].
//
// When kernel.kptr_restrict (or a missing CAP_SYSLOG) hides kernel
// addresses, every address in /proc/kallsyms reads 0; parsing then fails with
// an error that wraps [ErrAddressesHidden] and names the fix.
//
// The package keeps no global state and does no caching of lookups: callers
// that resolve the same address many times (the profile builder) cache per
// distinct address themselves. A Kallsyms is immutable once built and safe
// for concurrent use.
//
// The package builds on every OS; only [LoadKallsyms] is Linux-specific and
// returns an error wrapping [ErrNotSupported] elsewhere.
package symbolize
