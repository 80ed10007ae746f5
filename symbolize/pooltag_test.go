package symbolize

import (
	"bytes"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

const poolTagSample = "testdata/pooltag_sample.txt"

// loadSample parses testdata/pooltag_sample.txt, which has CRLF line
// endings on purpose (testdata/.gitattributes keeps git from changing them).
func loadSample(t *testing.T) (*PoolTags, []byte) {
	t.Helper()
	raw, err := os.ReadFile(poolTagSample)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := ParsePoolTags(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("ParsePoolTags(%s): %v", poolTagSample, err)
	}
	return pt, raw
}

func entryLines(es []Entry) []int {
	var lines []int
	for _, e := range es {
		lines = append(lines, e.Line)
	}
	return lines
}

func TestParsePoolTagsSample(t *testing.T) {
	pt, raw := loadSample(t)
	if !bytes.Contains(raw, []byte("\r\n")) {
		t.Fatalf("%s lost its CRLF line endings", poolTagSample)
	}
	if got, want := pt.Len(), 48; got != want {
		t.Errorf("Len() = %d, want %d", got, want)
	}
	wantSkipped := []struct {
		line   int
		reason string
	}{
		{31, "no \" - \" separator"},
		{39, `tag "Mmpvx" is longer than 4 bytes`},
		{63, "no \" - \" separator"},
		{64, "no tag before the separator"},
		{65, "control character"},
	}
	skipped := pt.Skipped()
	if len(skipped) != len(wantSkipped) {
		t.Fatalf("Skipped() = %+v, want lines %v", skipped, wantSkipped)
	}
	for i, w := range wantSkipped {
		s := skipped[i]
		if s.Line != w.line || !strings.Contains(s.Reason, w.reason) || strings.HasSuffix(s.Text, "\r") {
			t.Errorf("skipped[%d] = %+v, want line %d with reason containing %q", i, s, w.line, w.reason)
		}
	}
	for _, e := range pt.Entries() {
		if strings.ContainsAny(e.Tag+e.Binary+e.Description, "\r\n") {
			t.Errorf("line %d: entry %+v holds a line ending", e.Line, e)
		}
	}

	// The same text with LF line endings parses the same.
	lf, err := ParsePoolTags(bytes.NewReader(bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(lf.Entries(), pt.Entries()) || !slices.Equal(lf.Skipped(), pt.Skipped()) {
		t.Errorf("LF and CRLF versions parse differently")
	}
}

func TestPoolTagsLookup(t *testing.T) {
	pt, _ := loadSample(t)
	for _, tc := range []struct {
		name  string
		tag   string
		lines []int // lines of the expected entries, in order
	}{
		{"exact", "Wdog", []int{61}},
		{"two owners in file order", "Leak", []int{35, 36}},
		{"exact before wildcard", "AfdE", []int{17, 16}},
		{"wildcard only", "AfdZ", []int{16}},
		{"star matches rest", "AcpX", []int{14}},
		{"exact then star", "AcpE", []int{15, 14}},
		{"short query is space padded for ?", "Afd", []int{16}},
		{"short query is space padded for *", "Acp", []int{14}},
		{"short entry", "Cc", []int{22, 27}},
		{"short entry, padded query", "Cc  ", []int{22, 27}},
		{"one-letter entry", "G", []int{32}},
		{"most specific wildcard first", "CMkb", []int{25, 24, 27}},
		{"wildcards only, most specific first", "CMzz", []int{24, 27}},
		{"case-sensitive exact", "call", []int{21}},
		{"case-sensitive exact with wildcard", "Call", []int{20, 27}},
		{"case-sensitive no match", "cALL", nil},
		{"space inside tag", "Dh 0", []int{29}},
		{"space inside wildcard tag", "Gh 7", []int{33}},
		{"extra space after tag", "Mmpv", []int{38}},
		{"tag listed twice and its family", "Ntfx", []int{43, 44, 42}},
		{"tag spelled rem", "rem", []int{47}},
		{"tag starting with rem", "Rem1", []int{48}},
		{"dash inside tag", "a-bc", []int{51}},
		{"punctuation in tag", "Lr!!", []int{50}},
		{"plus in tag", "Irp+", []int{49}},
		{"tab separated", "Vad", []int{58}},
		{"leading blank", "Xtra", []int{62}},
		{"family ??", "Ul12", []int{54}},
		{"protected bit cleared", "Lea" + string([]byte{'k' | 0x80}), []int{35, 36}},
		{"unknown tag", "Nope", nil},
		{"too long", "Mmpvx", nil},
		{"empty", "", nil},
		{"skipped line is not an entry", "Zz\tx", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := pt.Lookup(tc.tag)
			if lines := entryLines(got); !slices.Equal(lines, tc.lines) {
				t.Errorf("Lookup(%q) = lines %v, want %v (%+v)", tc.tag, lines, tc.lines, got)
			}
		})
	}
}

func TestParsePoolTagLineFields(t *testing.T) {
	for _, tc := range []struct {
		name       string
		line       string
		want       Entry // Line is always 1
		wildcard   bool
		known      bool
		skipReason string // non-empty: the line must be skipped
	}{
		{"plain", "AdSv - vmsrvc.sys  - Virtual Machines Additions Service",
			Entry{"AdSv", "vmsrvc.sys", "Virtual Machines Additions Service", 1}, false, true, ""},
		{"unknown binary", "Atom - <unknown>    - Atom tables",
			Entry{"Atom", "<unknown>", "Atom tables", 1}, false, false, ""},
		{"kernel component", "Proc - nt!ps - Process objects",
			Entry{"Proc", "nt!ps", "Process objects", 1}, false, true, ""},
		{"function as binary", "Urdr - win32k!SetRedirectionBitmap          - REDIRECT",
			Entry{"Urdr", "win32k!SetRedirectionBitmap", "REDIRECT", 1}, false, true, ""},
		{"no space after second dash", "CMAl - nt!cm        -internal registry allocator",
			Entry{"CMAl", "nt!cm", "internal registry allocator", 1}, false, true, ""},
		{"dash inside description", "Usno - win32k!zzz - NONE - don't use",
			Entry{"Usno", "win32k!zzz", "NONE - don't use", 1}, false, true, ""},
		{"binary list", "NDnd - ndis.sys, ndiswan.sys - NDIS shared - two owners",
			Entry{"NDnd", "ndis.sys, ndiswan.sys", "NDIS shared - two owners", 1}, false, true, ""},
		{"indented description", "AfdE - afd.sys      -     AFD endpoint",
			Entry{"AfdE", "afd.sys", "AFD endpoint", 1}, false, true, ""},
		{"empty description", "Leak - myleak.sys -",
			Entry{"Leak", "myleak.sys", "", 1}, false, true, ""},
		{"two fields, binary", "VoSa - volsnap.sys",
			Entry{"VoSa", "volsnap.sys", "", 1}, false, true, ""},
		{"two fields, binary list", "VoSc - a.sys/b.dll",
			Entry{"VoSc", "a.sys/b.dll", "", 1}, false, true, ""},
		{"two fields, unknown", "VoSd - <unknown>",
			Entry{"VoSd", "<unknown>", "", 1}, false, false, ""},
		{"two fields, description", "VoSb - snapshot buffer allocations",
			Entry{"VoSb", "", "snapshot buffer allocations", 1}, false, false, ""},
		{"short tag", "Cc   - nt!cc - Cache Manager",
			Entry{"Cc", "nt!cc", "Cache Manager", 1}, false, true, ""},
		{"question mark", "Afd? - afd.sys - AFD objects",
			Entry{"Afd?", "afd.sys", "AFD objects", 1}, true, true, ""},
		{"star", "Bu*  - <unknown> - burner",
			Entry{"Bu*", "<unknown>", "burner", 1}, true, false, ""},
		{"tabs", "Vad\t-\tnt!mm\t-\tVADs",
			Entry{"Vad", "nt!mm", "VADs", 1}, false, true, ""},
		{"rem tag", "rem  - rdr.sys - tag rem",
			Entry{"rem", "rdr.sys", "tag rem", 1}, false, true, ""},
		{"too long", "Mmpvx - nt!mm - x", Entry{}, false, false, "longer than 4 bytes"},
		{"no separator", "       <unknown>", Entry{}, false, false, "separator"},
		{"dash without blank", "Abcd-x.sys-desc", Entry{}, false, false, "separator"},
		{"no tag", " - nt!mm - x", Entry{}, false, false, "no tag"},
		{"two stars", "A**  - x.sys - y", Entry{}, false, false, "more than one '*'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A valid first line keeps ParsePoolTags from failing with
			// ErrNoEntries when the line under test is skipped.
			pt, err := ParsePoolTags(strings.NewReader(tc.line + "\nZZZZ - z.sys - filler\n"))
			if err != nil {
				t.Fatal(err)
			}
			if tc.skipReason != "" {
				s := pt.Skipped()
				if len(s) != 1 || s[0].Line != 1 || s[0].Text != tc.line || !strings.Contains(s[0].Reason, tc.skipReason) {
					t.Errorf("Skipped() = %+v, want line 1 with reason containing %q", s, tc.skipReason)
				}
				if pt.Len() != 1 {
					t.Errorf("Len() = %d, want 1", pt.Len())
				}
				return
			}
			if len(pt.Skipped()) != 0 {
				t.Fatalf("line skipped: %+v", pt.Skipped())
			}
			got := pt.Entries()[0]
			if got != tc.want {
				t.Errorf("entry = %+v, want %+v", got, tc.want)
			}
			if got.IsWildcard() != tc.wildcard {
				t.Errorf("IsWildcard() = %v, want %v", got.IsWildcard(), tc.wildcard)
			}
			if got.BinaryKnown() != tc.known {
				t.Errorf("BinaryKnown() = %v, want %v", got.BinaryKnown(), tc.known)
			}
		})
	}
}

func TestParsePoolTagsComments(t *testing.T) {
	in := "\uFEFFrem header\r\nREM\r\nRem\tTabbed\r\n  rem indented\r\n// slashes\r\n\r\n   \r\nRemo - remo.sys - tag Remo\r\n"
	pt, err := ParsePoolTags(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(pt.Skipped()) != 0 {
		t.Errorf("Skipped() = %+v, want none", pt.Skipped())
	}
	if got := entryLines(pt.Lookup("Remo")); !slices.Equal(got, []int{8}) {
		t.Errorf("Lookup(Remo) = lines %v, want [8]", got)
	}

	// A byte order mark before an entry does not become part of its tag.
	pt, err = ParsePoolTags(strings.NewReader("\uFEFFLeak - l.sys - leak\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := entryLines(pt.Lookup("Leak")); !slices.Equal(got, []int{1}) {
		t.Errorf("with BOM: Lookup(Leak) = lines %v, want [1]", got)
	}
}

func TestParsePoolTagsErrors(t *testing.T) {
	readErr := errors.New("disk on fire")
	for _, tc := range []struct {
		name   string
		reader func() io.Reader
		is     error  // errors.Is target, or nil
		want   string // substring of the message
	}{
		{name: "empty", reader: func() io.Reader { return strings.NewReader("") },
			is: ErrNoEntries, want: "empty"},
		{name: "only comments", reader: func() io.Reader {
			return strings.NewReader("rem a\r\n\r\n// b\r\n")
		}, is: ErrNoEntries, want: "only comments"},
		{name: "not a pooltag file", reader: func() io.Reader {
			return strings.NewReader("hello\nworld\n")
		}, is: ErrNoEntries, want: "line 1"},
		{name: "read error", reader: func() io.Reader {
			return iotest.ErrReader(readErr)
		}, is: readErr, want: "reading pooltag file"},
		{name: "read error after data", reader: func() io.Reader {
			return &errAfter{data: "Leak - l.sys - x\n", err: readErr}
		}, is: readErr, want: "disk on fire"},
		{name: "utf-16", reader: func() io.Reader {
			return bytes.NewReader([]byte{0xff, 0xfe, 'L', 0, 'e', 0})
		}, want: "UTF-16"},
		{name: "huge line", reader: func() io.Reader {
			return strings.NewReader("Leak - l.sys - x\n" + strings.Repeat("x", 70000) + "\n")
		}, want: "line 2 is longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pt, err := ParsePoolTags(tc.reader())
			if err == nil {
				t.Fatalf("ParsePoolTags succeeded with %d entries", pt.Len())
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v does not wrap %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if msg := err.Error(); msg != "" && strings.ToLower(msg[:1]) != msg[:1] {
				t.Errorf("error %q does not start in lower case", msg)
			}
		})
	}
}

// errAfter returns data, then err.
type errAfter struct {
	data string
	err  error
}

func (r *errAfter) Read(p []byte) (int, error) {
	if r.data == "" {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestMatchPoolTag(t *testing.T) {
	for _, tc := range []struct {
		pattern, tag string
		want         bool
	}{
		{"Afd?", "AfdE", true},
		{"Afd?", "Afd ", true},
		{"Afd?", "AFdE", false},
		{"A?", "Ax  ", true},
		{"A?", "Axy ", false},
		{"Acp*", "Acp ", true},
		{"Acp*", "AcpX", true},
		{"Acp*", "AcX ", false},
		{"*", "Anyy", true},
		{"*x", "abcx", true},
		{"*x", "abcy", false},
		{"A*d", "Axyd", true},
		{"A*d", "Ad  ", false},
		{"?b*", "ab  ", true},
		{"Gh ?", "Gh 1", true},
		{"Gh ?", "Gh11", false},
		{"abcd*", "abcd", true},
		{"abc?*", "abcd", true},
	} {
		if got := matchPoolTag(tc.pattern, tc.tag); got != tc.want {
			t.Errorf("matchPoolTag(%q, %q) = %v, want %v", tc.pattern, tc.tag, got, tc.want)
		}
	}
}

// FuzzParsePoolTags: a pooltag.txt is user input; no content may panic the
// parser or Lookup.
func FuzzParsePoolTags(f *testing.F) {
	seed, err := os.ReadFile("testdata/pooltag_sample.txt")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed, "Leak")
	f.Add([]byte("rem x\r\nAb* - a.sys - A\r\nCc - <unknown> - c\n"), "Abcd")
	f.Add([]byte("Ntf? - ntfs.sys - NTFS\n"), "Ntfx")
	f.Fuzz(func(t *testing.T, data []byte, tag string) {
		pt, err := ParsePoolTags(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, e := range pt.Lookup(tag) {
			if e.Tag == "" {
				t.Errorf("entry with an empty tag: %+v", e)
			}
		}
	})
}
