package symbolize

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
)

// kallsymsPath is where Linux exposes its symbol table.
const kallsymsPath = "/proc/kallsyms"

// MaxLastSymbolSize bounds the extent of a symbol that is the last of its
// module (or of the kernel image) in address order. kallsyms gives no symbol
// sizes, so a symbol is taken to extend to the next symbol's start; after the
// last symbol of a module nothing says where its code ends, and without a
// bound every address above it (a freed module, a vmalloc address, garbage
// from a broken stack walk) would resolve to it. 1 MiB is far larger than any
// real kernel function yet small next to the gaps between the kernel image,
// modules and BPF programs.
const MaxLastSymbolSize = 1 << 20

// Symbol is a resolved kernel symbol.
type Symbol struct {
	// Name is the symbol name as kallsyms shows it, e.g. "kmem_cache_alloc_noprof"
	// or "bpf_prog_6deef7357e7b4530_kmp_tpbtf_kcal".
	Name string
	// Module is "" for the kernel image (vmlinux), "bpf" for BPF JIT programs
	// and trampolines (kallsyms shows them as "[bpf]"), and otherwise the
	// module name without brackets (e.g. "xfs", "__builtin__ftrace").
	Module string
	// Start is the symbol's address.
	Start uint64
}

// Kallsyms is a kernel symbol table holding the text symbols of kallsyms,
// sorted by address. Build one with [ParseKallsyms] or [LoadKallsyms]. It is
// immutable and safe for concurrent use.
type Kallsyms struct {
	// syms is sorted by start. Symbols sharing an address (aliases such as
	// _stext and _text) are ordered from least to most preferred, so that the
	// binary search, which lands on the last one, picks the preferred name.
	syms []ksym
	// names holds every symbol name back to back; a ksym points into it.
	// One string instead of ~10^5 small ones keeps the table compact and
	// lets Lookup return names without allocating.
	names string
	// modules interns module names; index 0 is "" (the kernel image).
	modules []string
}

// ksym is one text symbol. It is 24 bytes; the name lives in Kallsyms.names.
type ksym struct {
	start uint64
	name  uint32 // offset of the name in Kallsyms.names
	nlen  uint32 // length of the name in bytes
	mod   uint32 // index in Kallsyms.modules
	pref  uint8  // preference among aliases at one address; higher wins
}

// Prefixes of text symbols that are not functions of their own.
var ignoredPrefixes = [...]string{
	// CONFIG_FUNCTION_PADDING: __pfx_foo labels the padding (NOPs, 16 bytes
	// on x86) right before foo. Nothing executes there in a way a stack
	// walk reports, but kept, it would own the addresses just below foo.
	// Dropped, an address in the padding resolves to the end of the
	// previous function, which is harmless.
	"__pfx_",
	// CONFIG_CFI_CLANG: __cfi_foo labels the type-hash preamble before foo;
	// the same reasoning as for __pfx_.
	"__cfi_",
	// Lockdep class keys ("__key.123"); they are data, listed here in case
	// a kernel reports them with a text type.
	"__key.",
}

// ParseKallsyms parses a symbol table in the /proc/kallsyms format, one
// symbol per line:
//
//	ffffffff81000000 T _stext
//	ffffffffc0a01000 t foo_init	[foo_module]
//	ffffffffa0001234 t bpf_prog_6deef7357e7b4530_kmp_tpbtf_kcal	[bpf]
//
// It keeps text symbols (types t, T, w, W) and drops data, read-only, bss
// and absolute symbols, __pfx_ and __cfi_ padding labels, and text symbols
// at address 0. Lines need not be sorted; blank lines are skipped. A
// System.map file has the same format and parses too.
//
// On error it returns a nil table and an error that wraps one of:
// [ErrMalformed] for a line that is not "address type name [module]" (the
// message names the line number), [ErrAddressesHidden] when every address
// reads 0 (kptr_restrict), [ErrNoSymbols] for input without a text symbol,
// or the reader's error.
func ParseKallsyms(r io.Reader) (*Kallsyms, error) {
	var (
		syms       = make([]ksym, 0, 4096)
		arena      = make([]byte, 0, 64<<10)
		modules    = []string{""}
		modIndex   = map[string]uint32{"": 0}
		lastMod    uint32 // cache: consecutive lines usually share a module
		lines      int    // non-blank lines
		nonZero    bool   // some line, of any type, had a non-zero address
		zeroText   int    // text symbols dropped for being at address 0
		lineNumber int
	)
	sc := bufio.NewScanner(r)
	// /proc/kallsyms is several MiB; a larger buffer means fewer reads.
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		lineNumber++
		line := sc.Bytes()
		addrField, rest := nextField(line)
		if len(addrField) == 0 {
			continue // blank line
		}
		lines++
		typeField, rest := nextField(rest)
		nameField, rest := nextField(rest)
		modField, rest := nextField(rest)
		extra, _ := nextField(rest)
		if len(nameField) == 0 {
			return nil, fmt.Errorf("parsing kallsyms: line %d: %w: want \"address type name [module]\", got %q",
				lineNumber, ErrMalformed, truncate(line))
		}
		if len(extra) != 0 {
			return nil, fmt.Errorf("parsing kallsyms: line %d: %w: unexpected field %q after the module",
				lineNumber, ErrMalformed, truncate(extra))
		}
		addr, ok := parseHex(addrField)
		if !ok {
			return nil, fmt.Errorf("parsing kallsyms: line %d: %w: address %q is not a hexadecimal number of at most 16 digits",
				lineNumber, ErrMalformed, truncate(addrField))
		}
		if len(typeField) != 1 {
			return nil, fmt.Errorf("parsing kallsyms: line %d: %w: symbol type %q is not one letter",
				lineNumber, ErrMalformed, truncate(typeField))
		}
		var mod []byte
		if len(modField) != 0 {
			if len(modField) < 3 || modField[0] != '[' || modField[len(modField)-1] != ']' {
				return nil, fmt.Errorf("parsing kallsyms: line %d: %w: module %q is not of the form [name]",
					lineNumber, ErrMalformed, truncate(modField))
			}
			mod = modField[1 : len(modField)-1]
		}
		if addr != 0 {
			nonZero = true
		}

		typ := typeField[0]
		switch typ {
		case 't', 'T', 'w', 'W':
		default:
			continue // data, bss, read-only, absolute, ...
		}
		if ignoredName(nameField) {
			continue
		}
		if addr == 0 {
			zeroText++
			continue
		}

		m := uint32(0)
		if len(mod) != 0 {
			if string(mod) == modules[lastMod] {
				m = lastMod
			} else if i, ok := modIndex[string(mod)]; ok {
				m = i
			} else {
				m = uint32(len(modules))
				name := string(mod)
				modules = append(modules, name)
				modIndex[name] = m
			}
			lastMod = m
		}
		if uint64(len(arena))+uint64(len(nameField)) > math.MaxUint32 {
			return nil, fmt.Errorf("parsing kallsyms: line %d: %w: symbol names exceed 4 GiB",
				lineNumber, ErrMalformed)
		}
		syms = grow(syms, 1)
		arena = grow(arena, len(nameField))
		syms = append(syms, ksym{
			start: addr,
			name:  uint32(len(arena)),
			nlen:  uint32(len(nameField)),
			mod:   m,
			pref:  preference(typ, nameField),
		})
		arena = append(arena, nameField...)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parsing kallsyms: after line %d: %w", lineNumber, err)
	}

	switch {
	case lines == 0:
		return nil, fmt.Errorf("parsing kallsyms: input is empty: %w", ErrNoSymbols)
	case !nonZero || (len(syms) == 0 && zeroText > 0):
		return nil, fmt.Errorf("parsing kallsyms: %w (every address reads 0): run as root or with CAP_SYSLOG,"+
			" and if kernel.kptr_restrict is 2, lower it with 'sysctl kernel.kptr_restrict=0'", ErrAddressesHidden)
	case len(syms) == 0:
		return nil, fmt.Errorf("parsing kallsyms: %w (type t, T, w or W); lines read: %d", ErrNoSymbols, lines)
	}

	k := &Kallsyms{names: string(arena), modules: modules}
	// Doubling left up to half of syms unused; drop the slack once, since
	// the table usually lives as long as the process.
	if cap(syms)-len(syms) > len(syms)/8 {
		syms = slices.Clone(syms)
	}
	slices.SortFunc(syms, func(a, b ksym) int {
		if c := cmp.Compare(a.start, b.start); c != 0 {
			return c
		}
		if c := cmp.Compare(a.pref, b.pref); c != 0 {
			return c
		}
		// Only for determinism: the same input in any order gives the same
		// table. Reversed, so that the smallest name ends up last and wins.
		return strings.Compare(k.name(&b), k.name(&a))
	})
	k.syms = syms
	return k, nil
}

// Len returns the number of text symbols in the table, aliases included.
func (k *Kallsyms) Len() int {
	return len(k.syms)
}

// Lookup resolves addr to the symbol with the greatest start at or below it
// and returns that symbol and addr's offset from its start. It reports
// ok=false, with a zero Symbol, when addr is below the first symbol or past
// the symbol's extent: a symbol extends to the next symbol of the same
// module, and the last symbol of a module (or of the kernel image) extends at
// most [MaxLastSymbolSize] bytes and never past the next symbol.
//
// Lookup resolves addr as given. For a return address taken from a stack
// walk the caller should look up addr-1, so that a call that ends a function
// is attributed to that function rather than to the next one.
//
// When several symbols share an address, Lookup prefers a non-weak one,
// then a global one, then the one with the fewest leading underscores.
func (k *Kallsyms) Lookup(addr uint64) (sym Symbol, offset uint64, ok bool) {
	syms := k.syms
	i := sort.Search(len(syms), func(i int) bool { return syms[i].start > addr }) - 1
	if i < 0 {
		return Symbol{}, 0, false
	}
	s := &syms[i]
	offset = addr - s.start
	if offset >= k.extent(i) {
		return Symbol{}, 0, false
	}
	return k.symbol(s), offset, true
}

// extent returns how many bytes from its start syms[i] is taken to cover.
// i must be the last of the symbols sharing its address.
func (k *Kallsyms) extent(i int) uint64 {
	s := &k.syms[i]
	if i+1 == len(k.syms) {
		return MaxLastSymbolSize
	}
	next := &k.syms[i+1]
	size := next.start - s.start
	if next.mod == s.mod {
		return size
	}
	return min(size, MaxLastSymbolSize)
}

// Find returns the symbol called name. When several symbols have that name
// (static functions in different files or modules), it returns one of the
// kernel image if there is one, else the lowest-addressed one. It reports
// false when no text symbol has that name; data symbols and the dropped
// __pfx_ and __cfi_ labels are never found.
//
// Find scans the whole table (some 0.15 ms for a full kernel): it is
// meant for a handful of calls, such as checking which allocator functions
// exist before attaching kprobes.
func (k *Kallsyms) Find(name string) (Symbol, bool) {
	found := -1
	for i := range k.syms {
		s := &k.syms[i]
		if int(s.nlen) != len(name) || k.name(s) != name {
			continue
		}
		if s.mod == 0 {
			return k.symbol(s), true
		}
		if found < 0 {
			found = i
		}
	}
	if found < 0 {
		return Symbol{}, false
	}
	return k.symbol(&k.syms[found]), true
}

func (k *Kallsyms) name(s *ksym) string {
	return k.names[s.name : s.name+s.nlen]
}

func (k *Kallsyms) symbol(s *ksym) Symbol {
	return Symbol{Name: k.name(s), Module: k.modules[s.mod], Start: s.start}
}

// preference ranks a symbol among others at the same address, the way perf
// does: a non-weak symbol beats a weak one, then a global one beats a local
// one, then fewer leading underscores win (so "srso_alias_untrain_ret" beats
// "_stext", and a function beats a "__x_text_start" marker).
func preference(typ byte, name []byte) uint8 {
	var p uint8
	if typ != 'w' && typ != 'W' {
		p |= 1 << 7
	}
	if typ >= 'A' && typ <= 'Z' {
		p |= 1 << 6
	}
	underscores := 0
	for underscores < len(name) && underscores < 63 && name[underscores] == '_' {
		underscores++
	}
	return p | uint8(63-underscores)
}

// grow makes room for n more elements by doubling. append grows large
// slices by only 1.25x, which for a full kallsyms allocates and copies about
// five times the final size instead of two.
func grow[T any](s []T, n int) []T {
	if len(s)+n <= cap(s) {
		return s
	}
	g := make([]T, len(s), max(2*cap(s), len(s)+n))
	copy(g, s)
	return g
}

func ignoredName(name []byte) bool {
	for _, p := range ignoredPrefixes {
		if len(name) >= len(p) && string(name[:len(p)]) == p {
			return true
		}
	}
	return false
}

// nextField splits off the first field of b, fields being separated by
// spaces and tabs. It returns an empty field when b holds no more fields.
func nextField(b []byte) (field, rest []byte) {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	b = b[i:]
	j := 0
	for j < len(b) && b[j] != ' ' && b[j] != '\t' {
		j++
	}
	return b[:j], b[j:]
}

// parseHex parses 1 to 16 hexadecimal digits without a prefix. It is
// strconv.ParseUint without the []byte-to-string conversion per line.
func parseHex(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		v = v<<4 | uint64(d)
	}
	return v, true
}

// truncate shortens text quoted in an error so that a garbage line (the
// wrong file, a binary) does not produce a huge message.
func truncate(b []byte) string {
	const maxLen = 80
	if len(b) > maxLen {
		return string(b[:maxLen]) + "..."
	}
	return string(b)
}
