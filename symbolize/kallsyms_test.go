package symbolize

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// fixture mixes what a real /proc/kallsyms holds: aliases at one address,
// __pfx_ padding labels, local, global and weak text, data and absolute
// symbols, a module, and BPF programs. Addresses are in the x86-64 layout:
// kernel image, then BPF JIT images, then modules.
const fixture = `ffffffff81000000 T _stext
ffffffff81000000 T _text
ffffffff81000000 T srso_alias_untrain_ret
ffffffff81000100 T __pfx_do_one
ffffffff81000110 T do_one
ffffffff81000200 t local_two
ffffffff81000300 D some_data
ffffffff81000400 W weak_fn
ffffffff81000500 T _etext
ffffffff82000000 R __start_rodata
ffffffff83000000 b __key.12
0000000000000000 A fixed_percpu_data

ffffffffa0001234 t bpf_prog_6deef7357e7b4530_kmp_tpbtf_kcal	[bpf]
ffffffffa0002000 t bpf_trampoline_6442512345	[bpf]
ffffffffc0a00ff0 t __pfx_foo_init	[foo_module]
ffffffffc0a01000 t foo_init	[foo_module]
ffffffffc0a01100 t foo_exit	[foo_module]
ffffffffc0a01200 d foo_data	[foo_module]
`

// shuffled returns the lines of text in a random but fixed order.
func shuffled(text string) string {
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	r := rand.New(rand.NewPCG(1, 2))
	r.Shuffle(len(lines), func(i, j int) { lines[i], lines[j] = lines[j], lines[i] })
	return strings.Join(lines, "\n") + "\n"
}

func TestLookup(t *testing.T) {
	type want struct {
		name   string // "" means not ok
		module string
		offset uint64
	}
	lookups := []struct {
		name string
		addr uint64
		want want
	}{
		{"below first symbol", 0xffffffff80fffff0, want{}},
		{"zero", 0, want{}},
		{"alias prefers fewest underscores", 0xffffffff81000000, want{"srso_alias_untrain_ret", "", 0}},
		{"exactly at start", 0xffffffff81000110, want{"do_one", "", 0}},
		{"inside", 0xffffffff81000115, want{"do_one", "", 5}},
		{"pfx padding resolves to previous function", 0xffffffff81000105, want{"srso_alias_untrain_ret", "", 0x105}},
		{"local symbol", 0xffffffff810001ff, want{"do_one", "", 0xef}},
		{"data symbol ignored", 0xffffffff81000300, want{"local_two", "", 0x100}},
		{"weak symbol", 0xffffffff81000401, want{"weak_fn", "", 1}},
		{"last kernel symbol within limit", 0xffffffff81000500 + MaxLastSymbolSize - 1, want{"_etext", "", MaxLastSymbolSize - 1}},
		{"last kernel symbol beyond limit", 0xffffffff81000500 + MaxLastSymbolSize, want{}},
		{"rodata far beyond kernel text", 0xffffffff82000000, want{}},
		{"bpf program", 0xffffffffa0001240, want{"bpf_prog_6deef7357e7b4530_kmp_tpbtf_kcal", "bpf", 0xc}},
		{"bpf trampoline", 0xffffffffa0002000, want{"bpf_trampoline_6442512345", "bpf", 0}},
		{"module pfx padding far from bpf", 0xffffffffc0a00ff8, want{}},
		{"module symbol at start", 0xffffffffc0a01000, want{"foo_init", "foo_module", 0}},
		{"module symbol inside", 0xffffffffc0a01010, want{"foo_init", "foo_module", 0x10}},
		{"last module symbol within limit", 0xffffffffc0a01100 + MaxLastSymbolSize - 1, want{"foo_exit", "foo_module", MaxLastSymbolSize - 1}},
		{"last module symbol beyond limit", 0xffffffffc0a01100 + MaxLastSymbolSize, want{}},
		{"top of address space", math.MaxUint64, want{}},
	}
	inputs := []struct {
		name string
		text string
	}{
		{"sorted", fixture},
		{"shuffled", shuffled(fixture)},
		{"no trailing newline", strings.TrimSuffix(fixture, "\n")},
		{"CRLF", strings.ReplaceAll(fixture, "\n", "\r\n")},
	}
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			k, err := ParseKallsyms(strings.NewReader(in.text))
			if err != nil {
				t.Fatalf("ParseKallsyms: %v", err)
			}
			// 3 aliases, do_one, local_two, weak_fn, _etext, 2 bpf, 2 module.
			if got, want := k.Len(), 11; got != want {
				t.Errorf("Len() = %d, want %d", got, want)
			}
			for _, tc := range lookups {
				t.Run(tc.name, func(t *testing.T) {
					sym, off, ok := k.Lookup(tc.addr)
					if tc.want.name == "" {
						if ok {
							t.Fatalf("Lookup(%#x) = %+v+%#x, want not ok", tc.addr, sym, off)
						}
						if sym != (Symbol{}) || off != 0 {
							t.Errorf("Lookup(%#x) not ok but returned %+v+%#x, want zero values", tc.addr, sym, off)
						}
						return
					}
					if !ok {
						t.Fatalf("Lookup(%#x) not ok, want %s+%#x", tc.addr, tc.want.name, tc.want.offset)
					}
					if sym.Name != tc.want.name || sym.Module != tc.want.module || off != tc.want.offset {
						t.Errorf("Lookup(%#x) = %q [%q] +%#x, want %q [%q] +%#x",
							tc.addr, sym.Name, sym.Module, off, tc.want.name, tc.want.module, tc.want.offset)
					}
					if sym.Start+off != tc.addr {
						t.Errorf("Lookup(%#x): Start %#x + offset %#x != addr", tc.addr, sym.Start, off)
					}
				})
			}
		})
	}
}

func TestLookupAliasPreference(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		want  string
	}{
		{"global beats local", []string{"t local_name", "T global_name"}, "global_name"},
		{"non-weak beats weak global", []string{"W weak_name", "t strong_name"}, "strong_name"},
		{"fewer underscores", []string{"T __marker_start", "T _text", "T real_function"}, "real_function"},
		{"ties broken by name", []string{"T bbb", "T aaa"}, "aaa"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, order := range []string{"forward", "reverse"} {
				lines := slices.Clone(tc.lines)
				if order == "reverse" {
					slices.Reverse(lines)
				}
				var text strings.Builder
				for _, l := range lines {
					fmt.Fprintf(&text, "ffffffff81000000 %s\n", l)
				}
				k, err := ParseKallsyms(strings.NewReader(text.String()))
				if err != nil {
					t.Fatalf("ParseKallsyms: %v", err)
				}
				sym, _, ok := k.Lookup(0xffffffff81000000)
				if !ok || sym.Name != tc.want {
					t.Errorf("%s: Lookup = %q, %v; want %q", order, sym.Name, ok, tc.want)
				}
			}
		})
	}
}

func TestFind(t *testing.T) {
	k, err := ParseKallsyms(strings.NewReader(fixture + `ffffffff80000000 t cleanup	[low_module]
ffffffff81000600 t cleanup
ffffffffc0a01300 t only_in_module	[foo_module]
ffffffffc0b00000 t only_in_module	[bar_module]
`))
	if err != nil {
		t.Fatalf("ParseKallsyms: %v", err)
	}
	tests := []struct {
		name   string
		find   string
		want   Symbol
		wantOK bool
	}{
		{"kernel symbol", "do_one", Symbol{"do_one", "", 0xffffffff81000110}, true},
		{"module symbol", "foo_init", Symbol{"foo_init", "foo_module", 0xffffffffc0a01000}, true},
		{"bpf symbol", "bpf_trampoline_6442512345", Symbol{"bpf_trampoline_6442512345", "bpf", 0xffffffffa0002000}, true},
		{"alias not preferred by Lookup", "_text", Symbol{"_text", "", 0xffffffff81000000}, true},
		{"kernel image wins over lower module", "cleanup", Symbol{"cleanup", "", 0xffffffff81000600}, true},
		{"lowest address among modules", "only_in_module", Symbol{"only_in_module", "foo_module", 0xffffffffc0a01300}, true},
		{"pfx label dropped", "__pfx_do_one", Symbol{}, false},
		{"data symbol not found", "some_data", Symbol{}, false},
		{"prefix of a name", "do_on", Symbol{}, false},
		{"missing", "kmem_cache_alloc_noprof", Symbol{}, false},
		{"empty", "", Symbol{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := k.Find(tc.find)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("Find(%q) = %+v, %v; want %+v, %v", tc.find, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestParseKallsymsErrors(t *testing.T) {
	const good = "ffffffff81000000 T _stext\n"
	tests := []struct {
		name     string
		input    string
		wantErr  error
		wantText []string // substrings of the message
	}{
		{"empty", "", ErrNoSymbols, []string{"empty"}},
		{"only blank lines", "\n  \n\t\n", ErrNoSymbols, []string{"empty"}},
		{"only data symbols", "ffffffff82000000 D foo\nffffffff82000010 r bar\n", ErrNoSymbols, []string{"lines read: 2"}},
		{"only padding labels", "ffffffff81000000 T __pfx_foo\n", ErrNoSymbols, nil},
		{"address not hex", "zzzzffff81000000 T foo\n", ErrMalformed, []string{"line 1", `"zzzzffff81000000"`, "hexadecimal"}},
		{"bad line after blank lines", good + "\n\nxyz T foo\n", ErrMalformed, []string{"line 4", `"xyz"`}},
		{"0x prefix", "0xffffffff81000000 T foo\n", ErrMalformed, []string{"line 1"}},
		{"address too long", "1ffffffff81000000 T foo\n", ErrMalformed, []string{"line 1", "16 digits"}},
		{"missing name", good + "ffffffff81000010 T\n", ErrMalformed, []string{"line 2", "address type name"}},
		{"address only", "ffffffff81000010\n", ErrMalformed, []string{"line 1"}},
		{"long type", "ffffffff81000010 TT foo\n", ErrMalformed, []string{"line 1", `"TT"`}},
		{"module without brackets", "ffffffff81000010 t foo mod\n", ErrMalformed, []string{"line 1", `"mod"`, "[name]"}},
		{"empty module", "ffffffff81000010 t foo\t[]\n", ErrMalformed, []string{"line 1"}},
		{"extra field", "ffffffff81000010 t foo\t[mod] extra\n", ErrMalformed, []string{"line 1", `"extra"`}},
		{"bad line among data symbols", good + "ffffffff8200000g D foo\n", ErrMalformed, []string{"line 2"}},
		{"long garbage is truncated", strings.Repeat("x", 500) + " T foo\n", ErrMalformed, []string{"..."}},
		{"line too long", good + strings.Repeat("f", 2<<20) + "\n", bufio.ErrTooLong, []string{"after line 1"}},
		{
			"all addresses zero",
			"0000000000000000 T _stext\n0000000000000000 t foo\t[mod]\n0000000000000000 D data\n0000000000000000 A percpu\n",
			ErrAddressesHidden, []string{"kptr_restrict", "CAP_SYSLOG", "root"},
		},
		{
			"text zero, data not",
			"0000000000000000 T _stext\nffffffff82000000 D data\n",
			ErrAddressesHidden, []string{"kptr_restrict"},
		},
		{"only data at zero", "0000000000000000 D data\n", ErrAddressesHidden, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseKallsyms(strings.NewReader(tc.input))
			if err == nil {
				t.Fatalf("ParseKallsyms succeeded with %d symbols, want error %v", k.Len(), tc.wantErr)
			}
			if k != nil {
				t.Errorf("ParseKallsyms returned a table along with error %v", err)
			}
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("error %q does not wrap %q", err, tc.wantErr)
			}
			for _, s := range tc.wantText {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if len(err.Error()) > 400 {
				t.Errorf("error message is %d bytes long: %.100q...", len(err.Error()), err)
			}
		})
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestParseKallsymsReadError(t *testing.T) {
	boom := errors.New("boom")
	_, err := ParseKallsyms(io.MultiReader(strings.NewReader(fixture), errReader{boom}))
	if !errors.Is(err, boom) {
		t.Fatalf("error %v does not wrap the reader's error", err)
	}
}

func TestParseKallsymsTolerates(t *testing.T) {
	tests := []struct {
		name  string
		input string
		addr  uint64
		want  Symbol
	}{
		{"tabs and extra spaces", "  ffffffff81000000\tT   foo \n", 0xffffffff81000000, Symbol{"foo", "", 0xffffffff81000000}},
		{"upper-case hex", "FFFFFFFF81000000 T foo\n", 0xffffffff81000000, Symbol{"foo", "", 0xffffffff81000000}},
		{"32-bit addresses", "c1000000 T foo\n", 0xc1000004, Symbol{"foo", "", 0xc1000000}},
		{"zero-address text dropped", "0000000000000000 T zero\nffffffff81000000 T foo\n", 0xffffffff81000000, Symbol{"foo", "", 0xffffffff81000000}},
		{"builtin pseudo-module", "ffffffffc0201000 t ftrace_trampoline\t[__builtin__ftrace]\n", 0xffffffffc0201010, Symbol{"ftrace_trampoline", "__builtin__ftrace", 0xffffffffc0201000}},
		{"compiler suffixes kept", "ffffffff81000000 t foo.cold\n", 0xffffffff81000001, Symbol{"foo.cold", "", 0xffffffff81000000}},
		{"cfi label dropped", "ffffffff81000000 T bar\nffffffff81000100 T __cfi_foo\nffffffff81000110 T foo\n", 0xffffffff81000104, Symbol{"bar", "", 0xffffffff81000000}},
		{"top of address space", "ffffffffffff0000 T top\n", math.MaxUint64, Symbol{"top", "", 0xffffffffffff0000}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseKallsyms(strings.NewReader(tc.input))
			if err != nil {
				t.Fatalf("ParseKallsyms: %v", err)
			}
			sym, off, ok := k.Lookup(tc.addr)
			if !ok || sym != tc.want || off != tc.addr-tc.want.Start {
				t.Errorf("Lookup(%#x) = %+v+%#x, %v; want %+v+%#x", tc.addr, sym, off, ok, tc.want, tc.addr-tc.want.Start)
			}
		})
	}
}

// requireKallsyms reads the real /proc/kallsyms. It skips the test when the
// file is missing or its addresses are hidden, except when
// KMEMPROF_REQUIRE_BPF=1 (set by CI), where a real-kernel test must run.
func requireKallsyms(tb testing.TB) []byte {
	tb.Helper()
	if runtime.GOOS != "linux" {
		tb.Skipf("/proc/kallsyms exists only on Linux, not %s", runtime.GOOS)
	}
	skip := tb.Skipf
	if os.Getenv("KMEMPROF_REQUIRE_BPF") == "1" {
		skip = tb.Fatalf
	}
	data, err := os.ReadFile(kallsymsPath)
	if err != nil {
		skip("cannot read %s: %v", kallsymsPath, err)
	}
	if _, err := ParseKallsyms(bytes.NewReader(data)); errors.Is(err, ErrAddressesHidden) {
		skip("%s hides addresses (run as root with kernel.kptr_restrict < 2): %v", kallsymsPath, err)
	}
	return data
}

func TestLoadKallsymsReal(t *testing.T) {
	requireKallsyms(t)
	k, err := LoadKallsyms()
	if err != nil {
		t.Fatalf("LoadKallsyms: %v", err)
	}
	t.Logf("%d text symbols, %d modules, %d bytes of names", k.Len(), len(k.modules)-1, len(k.names))
	if k.Len() < 1000 {
		t.Errorf("Len() = %d, want a full kernel's worth of symbols", k.Len())
	}
	var alloc Symbol
	var ok bool
	for _, name := range []string{"kmem_cache_alloc_noprof", "kmem_cache_alloc"} {
		if alloc, ok = k.Find(name); ok {
			break
		}
	}
	if !ok {
		t.Fatal("neither kmem_cache_alloc_noprof nor kmem_cache_alloc found")
	}
	if alloc.Module != "" {
		t.Errorf("%s is in module %q, want the kernel image", alloc.Name, alloc.Module)
	}
	sym, off, ok := k.Lookup(alloc.Start + 1)
	if !ok || sym != alloc || off != 1 {
		t.Errorf("Lookup(%#x) = %+v+%d, %v; want %+v+1", alloc.Start+1, sym, off, ok, alloc)
	}
	if _, ok := k.Find("__pfx_" + alloc.Name); ok {
		t.Errorf("Find found the __pfx_ label of %s", alloc.Name)
	}
	checkInvariants(t, k)
}

func TestLoadKallsymsUnsupported(t *testing.T) {
	if runtime.GOOS == "linux" {
		t.Skip("LoadKallsyms is supported on linux")
	}
	if _, err := LoadKallsyms(); !errors.Is(err, ErrNotSupported) {
		t.Fatalf("LoadKallsyms error = %v, want ErrNotSupported", err)
	}
}

// checkInvariants verifies what Lookup relies on: symbols sorted by address,
// each one resolvable at its start to a symbol at that start.
func checkInvariants(t *testing.T, k *Kallsyms) {
	t.Helper()
	if k.Len() == 0 {
		t.Fatal("table is empty without an error")
	}
	if k.modules[0] != "" {
		t.Fatalf("modules[0] = %q, want \"\"", k.modules[0])
	}
	for i := range k.syms {
		s := &k.syms[i]
		if i > 0 && k.syms[i-1].start > s.start {
			t.Fatalf("symbols not sorted at %d: %#x > %#x", i, k.syms[i-1].start, s.start)
		}
		if s.start == 0 {
			t.Fatalf("symbol %q at address 0 kept", k.name(s))
		}
		got, off, ok := k.Lookup(s.start)
		if !ok || got.Start != s.start || off != 0 {
			t.Fatalf("Lookup(%#x) of %q = %+v+%#x, %v", s.start, k.name(s), got, off, ok)
		}
	}
}

func FuzzParseKallsyms(f *testing.F) {
	f.Add([]byte(fixture))
	f.Add([]byte(shuffled(fixture)))
	f.Add([]byte("0000000000000000 T _stext\n"))
	f.Add([]byte("ffffffff81000000 T a\nffffffff81000000 W b\n\nffffffffc0000000 t c\t[m]\n"))
	f.Add([]byte("ffffffffffffffff t top\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseKallsyms(bytes.NewReader(data))
		if err != nil {
			if k != nil {
				t.Fatalf("table returned with error %v", err)
			}
			return
		}
		checkInvariants(t, k)
		for _, addr := range []uint64{0, 1, math.MaxUint64, k.syms[0].start - 1, k.syms[len(k.syms)-1].start + MaxLastSymbolSize} {
			if sym, off, ok := k.Lookup(addr); ok && sym.Start+off != addr {
				t.Fatalf("Lookup(%#x) = %+v+%#x", addr, sym, off)
			}
		}
		for _, s := range k.syms[:min(len(k.syms), 8)] {
			if _, ok := k.Find(k.name(&s)); !ok {
				t.Fatalf("Find(%q) failed for a symbol in the table", k.name(&s))
			}
		}
	})
}

// footprint estimates the bytes a table keeps alive.
func footprint(k *Kallsyms) int {
	n := len(k.names) + cap(k.syms)*24
	for _, m := range k.modules {
		n += len(m) + 16
	}
	return n
}

func BenchmarkParseKallsyms(b *testing.B) {
	data := requireKallsyms(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var k *Kallsyms
	for b.Loop() {
		var err error
		if k, err = ParseKallsyms(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(k.Len()), "symbols")
	b.ReportMetric(float64(footprint(k)), "table-bytes")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(k.Len()), "ns/symbol")
}

// syntheticKallsyms builds a kernel-sized table for machines without a
// readable /proc/kallsyms.
func syntheticKallsyms(tb testing.TB) []byte {
	var buf bytes.Buffer
	r := rand.New(rand.NewPCG(3, 4))
	addr := uint64(0xffffffff81000000)
	for i := range 120_000 {
		fmt.Fprintf(&buf, "%016x T func_%d\n", addr, i)
		addr += 16 + uint64(r.IntN(64))*16
	}
	addr = 0xffffffffc0000000
	for i := range 30_000 {
		fmt.Fprintf(&buf, "%016x t mod_func_%d\t[mod%d]\n", addr, i, i/500)
		addr += 16 + uint64(r.IntN(64))*16
	}
	return buf.Bytes()
}

func BenchmarkLookup(b *testing.B) {
	var data []byte
	if runtime.GOOS == "linux" {
		if d, err := os.ReadFile(kallsymsPath); err == nil {
			if _, err := ParseKallsyms(bytes.NewReader(d)); err == nil {
				data = d
			}
		}
	}
	if data == nil {
		data = syntheticKallsyms(b)
	}
	k, err := ParseKallsyms(bytes.NewReader(data))
	if err != nil {
		b.Fatal(err)
	}
	// Addresses a stack walk would report: inside functions, a few hundred
	// bytes past a random symbol's start, plus some that resolve to nothing.
	r := rand.New(rand.NewPCG(5, 6))
	addrs := make([]uint64, 1<<16)
	for i := range addrs {
		if i%16 == 0 {
			addrs[i] = r.Uint64()
			continue
		}
		addrs[i] = k.syms[r.IntN(len(k.syms))].start + uint64(r.IntN(512))
	}
	b.ReportAllocs()
	hits, n := 0, 0
	for b.Loop() {
		if _, _, ok := k.Lookup(addrs[n&(len(addrs)-1)]); ok {
			hits++
		}
		n++
	}
	b.ReportMetric(float64(k.Len()), "symbols")
	b.ReportMetric(float64(hits)/float64(n), "resolved/op")
}

func BenchmarkFind(b *testing.B) {
	k, err := ParseKallsyms(bytes.NewReader(syntheticKallsyms(b)))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := k.Find("kmem_cache_alloc_noprof"); ok {
			b.Fatal("found a symbol that is not there")
		}
	}
	b.ReportMetric(float64(k.Len()), "symbols")
}
