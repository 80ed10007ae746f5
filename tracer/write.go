package tracer

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/pprof/profile"
)

// profileMode is the permission of written profiles: they hold kernel
// addresses, which defeat KASLR, so only the owner may read them.
const profileMode = 0o600

// WriteProfile writes p to path as EncodeProfile does, atomically: it writes a
// temporary file in the same directory, syncs it and renames it over path, so
// that path holds either the old content or the complete new profile. The
// file gets mode 0600 whatever the umask. On error the temporary file is
// removed and path is untouched; the error reads "writing profile PATH: ...".
func WriteProfile(path string, p *profile.Profile) (err error) {
	return WriteProfileOwned(path, p, -1, -1)
}

// WriteProfileOwned is WriteProfile with the file given to user uid and
// group gid (as chown does; -1 keeps the writer's) before it takes path's
// name: a profile written under sudo belongs to the user who ran sudo, still
// readable by no one else.
func WriteProfileOwned(path string, p *profile.Profile, uid, gid int) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = fmt.Errorf("cannot create files in %s: %w", dir, pe.Err)
		}
		return fmt.Errorf("writing profile %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close() // may already be closed; the first error matters
			_ = os.Remove(tmp)
			err = fmt.Errorf("writing profile %s: %w", path, err)
		}
	}()

	if err := f.Chmod(profileMode); err != nil {
		return err
	}
	if uid >= 0 || gid >= 0 {
		if err := f.Chown(uid, gid); err != nil {
			return err
		}
	}
	// gzip hands the file many small writes; batch them.
	w := bufio.NewWriterSize(f, 256<<10)
	if err := EncodeProfile(w, p); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	syncDir(dir)
	return nil
}

// EncodeProfile writes p to w in the gzip-compressed wire format that
// profile.Parse and `go tool pprof` read. Like runtime/pprof it compresses at
// gzip.BestSpeed: for a profile of a million allocations that is a few
// hundred milliseconds faster than profile.Write's default level, for files
// about a sixth larger. It returns the first error from w.
func EncodeProfile(w io.Writer, p *profile.Profile) error {
	zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return err
	}
	if err := p.WriteUncompressed(zw); err != nil {
		_ = zw.Close()
		return err
	}
	return zw.Close()
}

// syncDir makes a rename in dir durable where the OS supports it. A failure
// only weakens durability after a crash, not the written data, and Windows
// cannot sync directories at all, so errors are ignored.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}

// CheckWritable reports whether WriteProfile could later write path, so that
// a capture does not run for minutes only to fail at the end. It creates and
// removes a temporary file in path's directory, leaving nothing behind. It
// returns an error naming path when path is a directory, its directory is
// missing or not a directory, or files cannot be created there.
func CheckWritable(path string) error {
	if path == "" {
		return errors.New("checking output file: empty path")
	}
	if strings.HasSuffix(path, "/") || strings.HasSuffix(path, string(filepath.Separator)) {
		return fmt.Errorf("checking output file %s: is a directory; give a file name", path)
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("checking output file %s: is a directory; give a file name", path)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("checking output file %s: %w", path, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("checking output file %s: %s is not a directory", path, dir)
	}
	f, err := os.CreateTemp(dir, "."+base+".check-*")
	if err != nil {
		// The temporary file's name means nothing to the user.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("checking output file %s: cannot create files in %s: %w", path, dir, err)
	}
	name := f.Name()
	cerr := f.Close()
	rerr := os.Remove(name)
	if err := errors.Join(cerr, rerr); err != nil {
		return fmt.Errorf("checking output file %s: %w", path, err)
	}
	return nil
}
