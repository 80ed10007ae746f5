package symbolize

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// ErrNoEntries means a pooltag.txt held no usable pool tag entry: it was
// empty, held only comments, or was some other file.
var ErrNoEntries = errors.New("no pool tag entries")

// ErrBadTag means a pool tag given to a function was empty or longer than
// the 4 bytes a Windows pool tag has.
var ErrBadTag = errors.New("bad pool tag")

// PoolTagLen is the length of a Windows pool tag in bytes.
const PoolTagLen = 4

// maxPoolTagLine bounds one line of a pooltag file. Real lines are under
// 200 bytes; a longer one means the input is not a pooltag file.
const maxPoolTagLine = 64 << 10

// Entry is one line of pooltag.txt: `<Tag> - <Binary> - <Description>`.
type Entry struct {
	// Tag is the tag as written, without the spaces that pad or follow it:
	// "Ntfx", "Cc" (the kernel tag "Cc  "), "Dh 0", or a pattern such as
	// "Afd?" or "Acp*" (see [Entry.IsWildcard]).
	Tag string
	// Binary is the owner as written: a file ("ntfs.sys", "hal.dll"), a
	// kernel component ("nt!mm"), a function ("win32k!ClassAlloc"), a list
	// ("a.sys, b.sys"), or "<unknown>" (see [Entry.BinaryKnown]). It is ""
	// on the rare lines that give only a description.
	Binary string
	// Description is the rest of the line, trimmed. It may itself contain
	// " - " and may be empty.
	Description string
	// Line is the 1-based line number in the input.
	Line int
}

// IsWildcard reports whether e.Tag is a pattern: '?' matches any one
// character and '*' any run of characters, including none ("Acp*" matches
// "Acp " and "AcpE"). pooltag.txt uses them for families of tags such as
// "Afd?" (AFD objects). A tag that really contains '?' or '*' cannot be
// told apart from a pattern; the format has no escape.
func (e Entry) IsWildcard() bool {
	return strings.ContainsAny(e.Tag, "?*")
}

// BinaryKnown reports whether the entry names its owner, that is whether
// Binary is neither empty nor "<unknown>".
func (e Entry) BinaryKnown() bool {
	return e.Binary != "" && !strings.EqualFold(e.Binary, "<unknown>")
}

// SkippedLine is a line of the input that is neither an entry, a comment
// nor blank.
type SkippedLine struct {
	Line   int    // 1-based line number
	Text   string // the line, without its line ending
	Reason string // why it was not understood
}

// PoolTags is a parsed pooltag.txt: it maps Windows pool tags to the
// drivers that use them and what they allocate. Build one with
// [ParsePoolTags]. It is immutable and safe for concurrent use.
type PoolTags struct {
	entries []Entry
	// exact maps a 4-byte (space padded) tag to the indexes in entries of
	// the non-wildcard entries for it, in file order.
	exact map[string][]int
	// wild holds the indexes of wildcard entries, most specific first
	// (see ptLessSpecific).
	wild    []int
	skipped []SkippedLine
}

// ParsePoolTags reads the pooltag.txt format of the Debugging Tools for
// Windows (triage\pooltag.txt):
//
//	rem Comment lines start with the word "rem" (any case).
//	Ntfx - ntfs.sys     - General Allocation
//	Cc   - nt!cc        - Cache Manager allocations (catch-all)
//	Afd? - afd.sys      - AFD objects
//	Atom - <unknown>    - Atom Tables
//
// A line is a tag, a dash, the binary, a dash and a description. A dash
// counts as a separator when whitespace precedes it, so tags and binaries
// may contain dashes and the description may contain " - ". Lines with one
// separator are accepted too: the field is taken as the binary when it
// looks like one ("x.sys", "nt!mm", "<unknown>") and as the description
// otherwise. Blank lines, "rem" lines and "//" lines are comments; a line
// whose first word is "rem" followed by a dash separator ("rem  - ...") is
// an entry for the tag "rem ".
//
// Tags shorter than 4 characters are stored as written and match the tag
// padded with spaces, as the kernel pads them ("Cc" is "Cc  "); spaces
// inside a tag ("Dh 0") are kept. Tags are case-sensitive, as pool tags
// are ("Call" and "call" are different tags). Lines with CRLF endings and a
// leading UTF-8 byte order mark are accepted.
//
// Lines that are not understood (no separator, a tag longer than 4 bytes,
// a control character in the tag) do not fail the parse; they are listed
// by [PoolTags.Skipped]. ParsePoolTags fails only when reading fails, when
// a line is longer than 64 KiB, when the input is UTF-16, or when no entry
// was found (an error wrapping [ErrNoEntries]).
func ParsePoolTags(r io.Reader) (*PoolTags, error) {
	br := bufio.NewReader(r)
	if head, _ := br.Peek(2); bytes.Equal(head, []byte{0xff, 0xfe}) || bytes.Equal(head, []byte{0xfe, 0xff}) {
		return nil, errors.New("reading pooltag file: it is UTF-16 text; save it as ASCII or UTF-8")
	}
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 0, 4096), maxPoolTagLine)
	pt := &PoolTags{exact: make(map[string][]int)}
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimSuffix(sc.Text(), "\r")
		if lineNo == 1 {
			line = strings.TrimPrefix(line, "\uFEFF")
		}
		e, reason := parsePoolTagLine(line)
		switch {
		case reason == "":
			e.Line = lineNo
			i := len(pt.entries)
			pt.entries = append(pt.entries, e)
			if e.IsWildcard() {
				pt.wild = append(pt.wild, i)
			} else {
				key := padPoolTag(e.Tag)
				pt.exact[key] = append(pt.exact[key], i)
			}
		case reason != ptComment:
			pt.skipped = append(pt.skipped, SkippedLine{Line: lineNo, Text: line, Reason: reason})
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("reading pooltag file: line %d is longer than %d bytes: not a pooltag file", lineNo+1, maxPoolTagLine)
		}
		return nil, fmt.Errorf("reading pooltag file: %w", err)
	}
	if len(pt.entries) == 0 {
		if len(pt.skipped) > 0 {
			return nil, fmt.Errorf("%w: none of %d non-comment lines reads `<Tag> - <binary> - <Description>` (line %d: %s)",
				ErrNoEntries, len(pt.skipped), pt.skipped[0].Line, pt.skipped[0].Reason)
		}
		return nil, fmt.Errorf("%w: the input is empty or holds only comments", ErrNoEntries)
	}
	slices.SortStableFunc(pt.wild, func(a, b int) int {
		return ptLessSpecific(pt.entries[a].Tag, pt.entries[b].Tag)
	})
	return pt, nil
}

// ptComment is the reason parsePoolTagLine gives for blank and comment
// lines, which are not reported as skipped.
const ptComment = "comment"

// parsePoolTagLine parses one line without its line ending. It returns the
// entry (without Line) and "", or a reason the line is not an entry
// (ptComment for comments and blank lines).
func parsePoolTagLine(line string) (Entry, string) {
	s := strings.TrimLeft(line, " \t")
	if s == "" || strings.HasPrefix(s, "//") {
		return Entry{}, ptComment
	}
	if ptIsRem(s) {
		return Entry{}, ptComment
	}
	if s[0] == '-' && (len(s) == 1 || s[1] == ' ' || s[1] == '\t') {
		return Entry{}, "no tag before the separator"
	}
	i := ptSeparator(s)
	if i < 0 {
		return Entry{}, `no " - " separator after the tag`
	}
	tag := strings.TrimRight(s[:i], " \t")
	if tag == "" {
		return Entry{}, "no tag before the separator"
	}
	if len(tag) > PoolTagLen {
		return Entry{}, fmt.Sprintf("tag %q is longer than %d bytes", tag, PoolTagLen)
	}
	for j := 0; j < len(tag); j++ {
		if c := tag[j]; c < 0x20 || c == 0x7f {
			return Entry{}, fmt.Sprintf("tag %q holds a control character", tag)
		}
	}
	if strings.Count(tag, "*") > 1 {
		return Entry{}, fmt.Sprintf("tag %q holds more than one '*'", tag)
	}
	rest := s[i+1:]
	e := Entry{Tag: tag}
	if j := ptSeparator(rest); j >= 0 {
		e.Binary = strings.TrimSpace(rest[:j])
		e.Description = strings.TrimSpace(rest[j+1:])
	} else if f := strings.TrimSpace(rest); ptLooksLikeBinary(f) {
		e.Binary = f
	} else {
		e.Description = f
	}
	return e, ""
}

// ptIsRem reports whether s (without leading blanks) is a "rem"
// comment: its first word is "rem" in any case, and what follows is not a
// dash separator (which would make it an entry for the tag "rem").
func ptIsRem(s string) bool {
	if len(s) < 3 || !strings.EqualFold(s[:3], "rem") {
		return false
	}
	rest := s[3:]
	if rest == "" {
		return true
	}
	if rest[0] != ' ' && rest[0] != '\t' {
		return false // a tag such as "Rem1" or "remX"
	}
	return !strings.HasPrefix(strings.TrimLeft(rest, " \t"), "-")
}

// ptSeparator returns the index in s of the first '-' that follows a blank
// (" - ", "  -x", "\t-"), or -1. The first byte never counts: a tag may
// begin with '-' but is never empty.
func ptSeparator(s string) int {
	for i := 1; i < len(s); i++ {
		if s[i] == '-' && (s[i-1] == ' ' || s[i-1] == '\t') {
			return i
		}
	}
	return -1
}

// ptLooksLikeBinary reports whether the single field of a two-field line
// names an owner rather than describing the allocation: "<unknown>", or
// one or more names (separated by commas, slashes or blanks) that are each
// a file ("x.sys", "y.dll", "z.exe") or a component ("nt!mm").
func ptLooksLikeBinary(f string) bool {
	if strings.EqualFold(f, "<unknown>") {
		return true
	}
	names := strings.FieldsFunc(f, func(r rune) bool {
		return r == ',' || r == '/' || r == ' ' || r == '\t'
	})
	if len(names) == 0 {
		return false
	}
	for _, n := range names {
		ln := strings.ToLower(n)
		if !strings.Contains(ln, "!") && !strings.HasSuffix(ln, ".sys") &&
			!strings.HasSuffix(ln, ".dll") && !strings.HasSuffix(ln, ".exe") {
			return false
		}
	}
	return true
}

// ptLessSpecific orders wildcard patterns: more literal characters first,
// then '?'-only patterns before '*' ones (a '*' matches more tags). Equal
// patterns keep file order (the sort is stable).
func ptLessSpecific(a, b string) int {
	if c := cmp.Compare(ptLiteralChars(b), ptLiteralChars(a)); c != 0 {
		return c
	}
	return cmp.Compare(strings.Count(a, "*"), strings.Count(b, "*"))
}

func ptLiteralChars(pattern string) int {
	return len(pattern) - strings.Count(pattern, "?") - strings.Count(pattern, "*")
}

// padPoolTag pads tag with spaces to PoolTagLen bytes, as the kernel
// stores short tags. Longer tags are returned unchanged.
func padPoolTag(tag string) string {
	if len(tag) >= PoolTagLen {
		return tag
	}
	return tag + strings.Repeat(" ", PoolTagLen-len(tag))
}

// matchPoolTag reports whether the 4-byte tag matches pattern. '?'
// matches one byte, '*' any run of bytes; without a '*', a pattern shorter
// than 4 bytes is padded with spaces first.
func matchPoolTag(pattern, tag string) bool {
	star := strings.IndexByte(pattern, '*')
	if star < 0 {
		pattern = padPoolTag(pattern)
		if len(pattern) != len(tag) {
			return false
		}
		return ptMatchQ(pattern, tag)
	}
	prefix, suffix := pattern[:star], pattern[star+1:]
	if len(prefix)+len(suffix) > len(tag) {
		return false
	}
	return ptMatchQ(prefix, tag[:len(prefix)]) && ptMatchQ(suffix, tag[len(tag)-len(suffix):])
}

// ptMatchQ matches equal-length strings where '?' in pattern matches any byte.
func ptMatchQ(pattern, s string) bool {
	for i := 0; i < len(pattern); i++ {
		if pattern[i] != '?' && pattern[i] != s[i] {
			return false
		}
	}
	return true
}

// normalizePoolTag turns a tag as a caller has it into the 4-byte form
// entries are matched against: shorter tags are padded with spaces, and
// bit 7 of the last byte is cleared (Windows before 8 set bit 31 of the
// tag, PROTECTED_POOL, for protected allocations; some tools report it).
// It returns false for empty and longer tags.
func normalizePoolTag(tag string) (string, bool) {
	if tag == "" || len(tag) > PoolTagLen {
		return "", false
	}
	tag = padPoolTag(tag)
	if tag[PoolTagLen-1]&0x80 != 0 {
		b := []byte(tag)
		b[PoolTagLen-1] &^= 0x80
		tag = string(b)
	}
	return tag, true
}

// Lookup returns the entries for tag: first the entries written for
// exactly this tag, in file order, then the wildcard entries that match it,
// most specific first (more literal characters, then '?' before '*'). A
// tag shorter than 4 bytes is padded with spaces ("Cc" looks up "Cc  ").
// Matching is case-sensitive. Bit 7 of the fourth byte is ignored: Windows
// before 8 set the tag's top bit (PROTECTED_POOL) on protected
// allocations. Lookup returns nil for an empty tag, a tag longer than 4
// bytes, or a tag no entry matches. The returned slice is the caller's.
func (pt *PoolTags) Lookup(tag string) []Entry {
	key, ok := normalizePoolTag(tag)
	if !ok {
		return nil
	}
	var out []Entry
	for _, i := range pt.exact[key] {
		out = append(out, pt.entries[i])
	}
	for _, i := range pt.wild {
		if matchPoolTag(pt.entries[i].Tag, key) {
			out = append(out, pt.entries[i])
		}
	}
	return out
}

// Len returns the number of entries.
func (pt *PoolTags) Len() int { return len(pt.entries) }

// Entries returns a copy of every entry in file order.
func (pt *PoolTags) Entries() []Entry { return slices.Clone(pt.entries) }

// Skipped returns a copy of the lines that were neither entries, comments
// nor blank, in file order, with the reason each was not understood.
func (pt *PoolTags) Skipped() []SkippedLine { return slices.Clone(pt.skipped) }
