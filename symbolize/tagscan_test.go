package symbolize

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

// filler is driver-like bytes that contain none of the test tags.
func filler(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(0x90 + i%7) // NOPs and friends, never ASCII letters
	}
	return b
}

// image returns n bytes of filler with each tag written at its offset.
func image(n int, tags map[int]string) []byte {
	b := filler(n)
	for off, tag := range tags {
		copy(b[off:], tag)
	}
	return b
}

// manyTags adds enough tags found in no file to switch ScanDrivers to its
// many-tags search.
func manyTags(tags []string) []string {
	out := slices.Clone(tags)
	for i := 0; len(out) <= fewTags; i++ {
		out = append(out, fmt.Sprintf("Zq%02d", i))
	}
	return out
}

func TestScanDrivers(t *testing.T) {
	fsys := fstest.MapFS{
		"a.sys":       {Data: image(100, map[int]string{10: "Leak"})},
		"b.sys":       {Data: image(100, map[int]string{0: "Ntfx", 96: "Leak"})},
		"C.SYS":       {Data: image(50, map[int]string{20: "Ntfx"})},
		"d.Sys":       {Data: image(50, map[int]string{5: "Cc  ", 30: "Dh 0"})},
		"e.sys":       {Data: []byte("leak NTFX Cc \x00")}, // near misses only
		"empty.sys":   {Data: nil},
		"tiny.sys":    {Data: []byte("Lea")},
		"notes.txt":   {Data: []byte("Leak Ntfx Cc  ")},
		"a.sys.bak":   {Data: []byte("Leak")},
		"sys":         {Data: []byte("Leak")},
		"sub/f.sys":   {Data: []byte("Leak")}, // not at the root
		"dir.sys/g":   {Data: []byte("Leak")}, // dir.sys is a directory
		"z_last.sys":  {Data: image(20, map[int]string{16: "Leak"})},
		"under_8.sys": {Data: []byte("Ntfx")},
	}
	for _, tc := range []struct {
		name string
		tags []string
		want map[string][]string
	}{
		{"one tag", []string{"Leak"}, map[string][]string{"Leak": {"a.sys", "b.sys", "z_last.sys"}}},
		{"upper-case extension", []string{"Ntfx"}, map[string][]string{"Ntfx": {"C.SYS", "b.sys", "under_8.sys"}}},
		{"short tag padded with spaces", []string{"Cc"}, map[string][]string{"Cc": {"d.Sys"}}},
		{"short and padded spellings", []string{"Cc", "Cc  "}, map[string][]string{"Cc": {"d.Sys"}, "Cc  ": {"d.Sys"}}},
		{"space inside tag", []string{"Dh 0"}, map[string][]string{"Dh 0": {"d.Sys"}}},
		{"case-sensitive", []string{"leak", "LEAK"}, map[string][]string{"leak": {"e.sys"}}},
		{"not found is absent", []string{"Nope", "Leak"}, map[string][]string{"Leak": {"a.sys", "b.sys", "z_last.sys"}}},
		{"repeated tag", []string{"Ntfx", "Ntfx"}, map[string][]string{"Ntfx": {"C.SYS", "b.sys", "under_8.sys"}}},
		{"no tags", nil, map[string][]string{}},
	} {
		for _, chunk := range []int{1, 2, 5, 8, 64, scanChunkSize} {
			for _, many := range []bool{false, true} {
				tags := tc.tags
				if many {
					tags = manyTags(tags)
				}
				t.Run(fmt.Sprintf("%s/chunk=%d/many=%v", tc.name, chunk, many), func(t *testing.T) {
					got, err := scanDrivers(fsys, tags, chunk)
					if err != nil {
						t.Fatal(err)
					}
					if !maps.EqualFunc(got, tc.want, slices.Equal) {
						t.Errorf("got %v, want %v", got, tc.want)
					}
				})
			}
		}
	}
}

// TestScanDriversStraddle puts a tag at every offset of a file and scans it
// with chunk sizes that put chunk boundaries everywhere inside the tag.
func TestScanDriversStraddle(t *testing.T) {
	const size = 40
	for chunk := 1; chunk <= 12; chunk++ {
		for _, many := range []bool{false, true} {
			tags := []string{"Ntfx"}
			if many {
				tags = manyTags(tags)
			}
			t.Run(fmt.Sprintf("chunk=%d/many=%v", chunk, many), func(t *testing.T) {
				for off := 0; off+4 <= size; off++ {
					fsys := fstest.MapFS{"x.sys": {Data: image(size, map[int]string{off: "Ntfx"})}}
					got, err := scanDrivers(fsys, tags, chunk)
					if err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(got["Ntfx"], []string{"x.sys"}) {
						t.Errorf("tag at offset %d not found: %v", off, got)
					}
				}
			})
		}
	}
}

// TestScanDriversStraddleDefaultChunk checks the exported ScanDrivers on a
// file larger than its chunk, with the tag across the first boundary.
func TestScanDriversStraddleDefaultChunk(t *testing.T) {
	first := scanOverlap + scanChunkSize // bytes of the first read
	size := 3 * scanChunkSize
	for _, off := range []int{first - 3, first - 2, first - 1, first + scanChunkSize - 2, size - 4} {
		fsys := fstest.MapFS{
			"big.sys":   {Data: image(size, map[int]string{off: "Leak"})},
			"other.sys": {Data: filler(size)},
		}
		for _, tags := range [][]string{{"Leak"}, manyTags([]string{"Leak"})} {
			got, err := ScanDrivers(fsys, tags)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got["Leak"], []string{"big.sys"}) || len(got) != 1 {
				t.Errorf("offset %d, %d tags: got %v", off, len(tags), got)
			}
		}
	}
}

func TestScanDriversBadTag(t *testing.T) {
	fsys := fstest.MapFS{"a.sys": {Data: []byte("Leak")}}
	for _, tc := range []struct {
		name string
		tags []string
	}{
		{"empty", []string{"Leak", ""}},
		{"too long", []string{"Leaky"}},
		{"too long in bytes", []string{"Lé€"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ScanDrivers(fsys, tc.tags)
			if !errors.Is(err, ErrBadTag) || got != nil {
				t.Errorf("ScanDrivers(%q) = %v, %v; want nil and ErrBadTag", tc.tags, got, err)
			}
		})
	}
}

// faultyFS wraps an fs.FS: opening a name in openErr fails with that
// error, and reading a name in readErr fails after its first readAfter bytes.
type faultyFS struct {
	fs.FS
	openErr   map[string]error
	readErr   map[string]error
	readAfter int
	listErr   error
}

func (f faultyFS) Open(name string) (fs.File, error) {
	if name == "." && f.listErr != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: f.listErr}
	}
	if err := f.openErr[name]; err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	file, err := f.FS.Open(name)
	if err != nil || f.readErr[name] == nil {
		return file, err
	}
	return &faultyFile{File: file, left: f.readAfter, err: f.readErr[name]}, nil
}

// ReadDir keeps fs.ReadDir on the wrapped FS's fast path.
func (f faultyFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if f.listErr != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: f.listErr}
	}
	return fs.ReadDir(f.FS, name)
}

type faultyFile struct {
	fs.File
	left int
	err  error
}

func (f *faultyFile) Read(p []byte) (int, error) {
	if f.left == 0 {
		return 0, f.err
	}
	p = p[:min(len(p), f.left)]
	n, err := f.File.Read(p)
	f.left -= n
	return n, err
}

func TestScanDriversFileErrors(t *testing.T) {
	base := fstest.MapFS{
		"a.sys":      {Data: image(64, map[int]string{8: "Leak"})},
		"locked.sys": {Data: []byte("Leak")},
		"broken.sys": {Data: image(64, map[int]string{2: "Ntfx", 40: "Leak"})},
		"z.sys":      {Data: []byte("..Leak..")},
	}
	fsys := faultyFS{
		FS:        base,
		openErr:   map[string]error{"locked.sys": fs.ErrPermission},
		readErr:   map[string]error{"broken.sys": io.ErrClosedPipe},
		readAfter: 16,
	}
	got, err := scanDrivers(fsys, []string{"Leak", "Ntfx"}, 8)
	if err == nil {
		t.Fatal("no error for the unreadable files")
	}
	for _, want := range []error{fs.ErrPermission, io.ErrClosedPipe} {
		if !errors.Is(err, want) {
			t.Errorf("error %q does not wrap %v", err, want)
		}
	}
	for _, name := range []string{"locked.sys", "broken.sys"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
	// The other files are still scanned, and what broken.sys showed before
	// its read error counts.
	want := map[string][]string{"Leak": {"a.sys", "z.sys"}, "Ntfx": {"broken.sys"}}
	if !maps.EqualFunc(got, want, slices.Equal) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestScanDriversStopsWhenAllFound(t *testing.T) {
	// The read error comes after both tags: the scan must not reach it.
	fsys := faultyFS{
		FS:        fstest.MapFS{"a.sys": {Data: image(4096, map[int]string{0: "Leak", 8: "Ntfx"})}},
		readErr:   map[string]error{"a.sys": io.ErrClosedPipe},
		readAfter: 64,
	}
	got, err := scanDrivers(fsys, []string{"Leak", "Ntfx"}, 16)
	if err != nil {
		t.Fatalf("read past the point where every tag was found: %v", err)
	}
	if len(got) != 2 {
		t.Errorf("got %v", got)
	}
}

func TestScanDriversListError(t *testing.T) {
	fsys := faultyFS{FS: fstest.MapFS{}, listErr: fs.ErrNotExist}
	got, err := ScanDrivers(fsys, []string{"Leak"})
	if got != nil || !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "listing driver directory") {
		t.Errorf("got %v, %v", got, err)
	}
}

func TestIsDriverImageName(t *testing.T) {
	for name, want := range map[string]bool{
		"ntfs.sys": true, "NDIS.SYS": true, "a.Sys": true,
		"ntoskrnl.exe": false, "a.sys.bak": false, "sys": false, "a.sy": false, "": false,
	} {
		if got := IsDriverImageName(name); got != want {
			t.Errorf("IsDriverImageName(%q) = %v, want %v", name, got, want)
		}
	}
}

func BenchmarkScanDrivers(b *testing.B) {
	data := image(16<<20, map[int]string{8 << 20: "Leak"})
	fsys := fstest.MapFS{"big.sys": {Data: data}}
	for _, tc := range []struct {
		name string
		tags []string
	}{
		{"1tag", []string{"Leak"}},
		{"4tags", []string{"Leak", "Nop1", "Nop2", "Nop3"}},
		{"64tags", manyTagsN(64)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := ScanDrivers(fsys, tc.tags); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func manyTagsN(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("Zq%02d", i))
	}
	return out
}
