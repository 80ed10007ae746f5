package symbolize

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
)

// scanChunkSize is how much of a driver file ScanDrivers holds at a time.
const scanChunkSize = 256 << 10

// scanOverlap is how many bytes of one chunk are kept in front of the next,
// so that a tag straddling two chunks is still seen whole.
const scanOverlap = PoolTagLen - 1

// fewTags is the largest number of tags searched with one bytes.Index pass
// each. More tags are searched in a single pass over the data that looks
// up every 4-byte window in a set.
const fewTags = 8

// IsDriverImageName reports whether name is a kernel driver image by its
// extension: ".sys" in any case ("ntfs.sys", "NDIS.SYS").
func IsDriverImageName(name string) bool {
	return strings.EqualFold(path.Ext(name), ".sys")
}

// ScanDrivers reports which of the given pool tags occur in the bytes of
// each driver image (a file for which [IsDriverImageName] holds) at the root of
// fsys; subdirectories are not searched. Use os.DirFS(dir) for a directory
// such as %SystemRoot%\System32\drivers.
//
// Why this finds the owner of a tag: a driver passes its tag to
// ExAllocatePoolWithTag (or ExAllocatePool2) as a 32-bit constant, which
// the compiler encodes as a little-endian immediate operand or constant in
// the image. C source writes the tag reversed, as the multi-character
// constant 'xftN', so that its little-endian bytes read in order as the
// tag: the bytes 'N','t','f','x' for the tag "Ntfx", the same order poolmon
// and the ETW events show. ScanDrivers searches for exactly these bytes.
// A hit is a lead, not proof: four bytes can occur by chance (in strings,
// code or data), a compressed or packed image hides its tags, and tags of
// the kernel itself (pooltag.txt's "nt!..." owners) are in ntoskrnl.exe,
// not in a .sys file.
//
// Each tag is 1 to 4 bytes; shorter tags are padded with spaces as the
// kernel pads them ("Cc" is searched as "Cc  "). An empty or longer tag
// fails the call with an error wrapping [ErrBadTag]. Tags are matched
// byte for byte: case-sensitive, no wildcards.
//
// Files are read in chunks, so a large driver is never held in memory
// whole, and a file is read only until all tags have been found in it.
//
// The result maps each given tag, as given, to the sorted names of the
// files that contain it; tags found in no file are absent. If the root of
// fsys cannot be listed, ScanDrivers returns nil and the error. A file that
// cannot be opened or read does not stop the scan: the others are still
// searched, the result holds what was found, and the error joins one error
// per such file.
func ScanDrivers(fsys fs.FS, tags []string) (map[string][]string, error) {
	return scanDrivers(fsys, tags, scanChunkSize)
}

// scanDrivers is ScanDrivers with a chunk size (tests use small ones).
func scanDrivers(fsys fs.FS, tags []string, chunk int) (map[string][]string, error) {
	// patterns are the distinct padded tags; given[i] lists the caller's
	// spellings of patterns[i].
	var (
		patterns [][]byte
		given    [][]string
		index    = make(map[string]int)
	)
	for _, t := range tags {
		if t == "" || len(t) > PoolTagLen {
			return nil, fmt.Errorf("%w %q: a pool tag is 1 to %d bytes", ErrBadTag, t, PoolTagLen)
		}
		p := padPoolTag(t)
		i, ok := index[p]
		if !ok {
			i = len(patterns)
			index[p] = i
			patterns = append(patterns, []byte(p))
			given = append(given, nil)
		}
		given[i] = append(given[i], t)
	}

	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("listing driver directory: %w", err)
	}
	s := newTagScanner(patterns, chunk)
	found := make([][]string, len(patterns)) // file names per pattern
	var errs []error
	for _, e := range entries {
		if e.IsDir() || !IsDriverImageName(e.Name()) {
			continue
		}
		hits, err := s.scanFile(fsys, e.Name())
		if err != nil {
			errs = append(errs, fmt.Errorf("reading %s: %w", e.Name(), err))
		}
		for i, hit := range hits {
			if hit {
				found[i] = append(found[i], e.Name())
			}
		}
	}
	out := make(map[string][]string)
	for i, files := range found {
		if len(files) == 0 {
			continue
		}
		// fs.ReadDir returns entries sorted by name, so files is sorted.
		for _, t := range given[i] {
			out[t] = append([]string(nil), files...)
		}
	}
	return out, errors.Join(errs...)
}

// tagScanner searches files for a fixed set of 4-byte patterns. It reuses
// one buffer across files.
type tagScanner struct {
	patterns [][]byte
	buf      []byte
	// For many patterns: first2 has bit k set when some pattern starts
	// with the two bytes k (little-endian), and words maps each pattern's
	// little-endian value to its index in patterns.
	first2 []uint64
	words  map[uint32]int
}

func newTagScanner(patterns [][]byte, chunk int) *tagScanner {
	s := &tagScanner{patterns: patterns, buf: make([]byte, scanOverlap+chunk)}
	if len(patterns) > fewTags {
		s.first2 = make([]uint64, 1<<16/64)
		s.words = make(map[uint32]int, len(patterns))
		for i, p := range patterns {
			k := binary.LittleEndian.Uint16(p)
			s.first2[k/64] |= 1 << (k % 64)
			s.words[binary.LittleEndian.Uint32(p)] = i
		}
	}
	return s
}

// scanFile reports, per pattern, whether file name of fsys contains it.
// On a read error the hits found before it are returned with the error.
func (s *tagScanner) scanFile(fsys fs.FS, name string) ([]bool, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return s.scan(f)
}

// scan reads r to the end, or until every pattern has been found.
func (s *tagScanner) scan(r io.Reader) ([]bool, error) {
	hits := make([]bool, len(s.patterns))
	left := len(s.patterns)
	carry := 0
	for left > 0 {
		n, err := io.ReadFull(r, s.buf[carry:])
		data := s.buf[:carry+n]
		left -= s.search(data, hits)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return hits, nil
		}
		if err != nil {
			return hits, err
		}
		// Keep the last bytes: with the next chunk they may complete a tag.
		carry = copy(s.buf, data[len(data)-scanOverlap:])
	}
	return hits, nil
}

// search marks in hits the patterns not yet found that occur in data and
// returns how many it marked.
func (s *tagScanner) search(data []byte, hits []bool) int {
	marked := 0
	if s.words == nil {
		for i, p := range s.patterns {
			if !hits[i] && bytes.Contains(data, p) {
				hits[i] = true
				marked++
			}
		}
		return marked
	}
	for i := 0; i+PoolTagLen <= len(data); i++ {
		k := binary.LittleEndian.Uint16(data[i:])
		if s.first2[k/64]&(1<<(k%64)) == 0 {
			continue
		}
		if j, ok := s.words[binary.LittleEndian.Uint32(data[i:])]; ok && !hits[j] {
			hits[j] = true
			marked++
		}
	}
	return marked
}
