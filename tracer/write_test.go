package tracer_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/pprof/profile"

	"github.com/kmemprof/kmemprof/tracer"
)

// dirEntries lists the names in dir, failing the test on error.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteProfile(t *testing.T) {
	_, p, _ := buildFixture(t)

	t.Run("new file", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "kmem.pb.gz")
		if err := tracer.WriteProfile(path, p); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
			t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
		}
		if got := dirEntries(t, dir); len(got) != 1 || got[0] != "kmem.pb.gz" {
			t.Errorf("directory holds %q, want only kmem.pb.gz", got)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		q, err := profile.Parse(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("parsing written profile: %v", err)
		}
		if len(q.Sample) != len(p.Sample) {
			t.Errorf("%d samples written, want %d", len(q.Sample), len(p.Sample))
		}
	})

	t.Run("replaces existing file and its mode", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "kmem.pb.gz")
		if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
		// Keep the old file open: an atomic rename leaves this handle on the
		// old content instead of truncating it.
		old, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer old.Close()
		if err := tracer.WriteProfile(path, p); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 16)
		n, _ := old.Read(buf)
		if string(buf[:n]) != "old" {
			t.Errorf("old handle reads %q, want the old content (file was rewritten in place)", buf[:n])
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
			t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
		}
		if got := dirEntries(t, dir); len(got) != 1 {
			t.Errorf("directory holds %q, want only kmem.pb.gz", got)
		}
	})

	t.Run("relative path", func(t *testing.T) {
		dir := t.TempDir()
		t.Chdir(dir)
		if err := tracer.WriteProfile("kmem.pb.gz", p); err != nil {
			t.Fatal(err)
		}
		if got := dirEntries(t, dir); len(got) != 1 || got[0] != "kmem.pb.gz" {
			t.Errorf("directory holds %q, want only kmem.pb.gz", got)
		}
	})

	failures := []struct {
		name  string
		path  func(dir string) string
		setup func(t *testing.T, dir string)
	}{
		{
			name: "missing directory",
			path: func(dir string) string { return filepath.Join(dir, "nope", "kmem.pb.gz") },
		},
		{
			name: "path is a directory",
			path: func(dir string) string { return filepath.Join(dir, "sub") },
			setup: func(t *testing.T, dir string) {
				if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
					t.Fatal(err)
				}
				// A non-empty directory cannot be renamed over on any OS.
				if err := os.WriteFile(filepath.Join(dir, "sub", "f"), nil, 0o600); err != nil {
					t.Fatal(err)
				}
			},
		},
	}
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			before := dirEntries(t, dir)
			path := tt.path(dir)
			err := tracer.WriteProfile(path, p)
			if err == nil {
				t.Fatal("WriteProfile succeeded")
			}
			if !strings.HasPrefix(err.Error(), "writing profile "+path+": ") {
				t.Errorf("error %q does not start with %q", err, "writing profile "+path+": ")
			}
			if after := dirEntries(t, dir); strings.Join(after, ",") != strings.Join(before, ",") {
				t.Errorf("directory changed from %q to %q: temporary file left behind", before, after)
			}
		})
	}
}

func TestCheckWritable(t *testing.T) {
	type test struct {
		name    string
		path    func(dir string) string
		setup   func(t *testing.T, dir string)
		fail    bool
		mention string // part of the error text that is the same on every OS
		is      error  // errors.Is target, when there is one
	}
	tests := []test{
		{
			name: "new file",
			path: func(dir string) string { return filepath.Join(dir, "kmem.pb.gz") },
		},
		{
			name: "existing file",
			path: func(dir string) string { return filepath.Join(dir, "old.pb.gz") },
			setup: func(t *testing.T, dir string) {
				if err := os.WriteFile(filepath.Join(dir, "old.pb.gz"), []byte("x"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "missing directory",
			path: func(dir string) string { return filepath.Join(dir, "nope", "kmem.pb.gz") },
			fail: true,
			is:   fs.ErrNotExist,
		},
		{
			name:    "directory",
			path:    func(dir string) string { return dir },
			fail:    true,
			mention: "is a directory",
		},
		{
			name:    "trailing separator",
			path:    func(dir string) string { return filepath.Join(dir, "out") + string(filepath.Separator) },
			fail:    true,
			mention: "is a directory",
		},
		{
			// Stands in for a read-only directory, which root could still
			// write to.
			name: "parent is a regular file",
			path: func(dir string) string { return filepath.Join(dir, "file", "kmem.pb.gz") },
			setup: func(t *testing.T, dir string) {
				if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o600); err != nil {
					t.Fatal(err)
				}
			},
			fail: true,
		},
		{
			name:    "empty",
			path:    func(string) string { return "" },
			fail:    true,
			mention: "empty path",
		},
	}
	// Mode bits deny nothing to root, nor on Windows.
	if runtime.GOOS != "windows" && os.Geteuid() != 0 {
		tests = append(tests, test{
			name: "read-only directory",
			path: func(dir string) string { return filepath.Join(dir, "ro", "kmem.pb.gz") },
			setup: func(t *testing.T, dir string) {
				if err := os.Mkdir(filepath.Join(dir, "ro"), 0o500); err != nil {
					t.Fatal(err)
				}
			},
			fail:    true,
			mention: "cannot create files",
			is:      fs.ErrPermission,
		})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			before := dirEntries(t, dir)
			path := tt.path(dir)
			err := tracer.CheckWritable(path)
			if !tt.fail {
				if err != nil {
					t.Fatalf("CheckWritable(%q) = %v", path, err)
				}
			} else {
				if err == nil {
					t.Fatalf("CheckWritable(%q) succeeded", path)
				}
				if !strings.Contains(err.Error(), tt.mention) {
					t.Errorf("error %q does not mention %q", err, tt.mention)
				}
				if tt.is != nil && !errors.Is(err, tt.is) {
					t.Errorf("error %q is not %v", err, tt.is)
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("error %q does not name the path", err)
				}
			}
			if after := dirEntries(t, dir); strings.Join(after, ",") != strings.Join(before, ",") {
				t.Errorf("directory changed from %q to %q", before, after)
			}
		})
	}
}
