// Command mkrelease packs the release binaries that `make release` built
// into archives people install from, writes SHA256SUMS, and checks every
// archive it wrote by reading it back: the files it must hold, and for
// Linux that the binary is static and of the right architecture.
//
//	mkrelease -version V -dist DIR [-gpl FILE]
//
// DIR holds linux-amd64/kmemprof, linux-arm64/kmemprof and
// windows-amd64/kmemprof.exe. It writes into DIR:
//
//	kmemprof-V-linux-amd64.tar.gz, kmemprof-V-linux-arm64.tar.gz
//	kmemprof-V-windows-amd64.zip (with the GPL-3.0 text: see NOTICE)
//	kmemprof_V_amd64.deb, kmemprof_V_arm64.deb
//	SHA256SUMS
package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"debug/pe"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// target is one platform's build.
type target struct {
	goos, goarch string
	exe          string // file name of the binary
	debArch      string // "" for no .deb
	machine      elf.Machine
}

var targets = []target{
	{"linux", "amd64", "kmemprof", "amd64", elf.EM_X86_64},
	{"linux", "arm64", "kmemprof", "arm64", elf.EM_AARCH64},
	{"windows", "amd64", "kmemprof.exe", "", 0},
}

// docs are the files every archive carries beside the binary.
var docs = []string{"README.md", "LICENSE", "NOTICE"}

// deployFiles are the agent's deployment files, which the Linux archives
// carry under deploy/ (the .deb installs the unit, not enabled).
var deployFiles = []string{"kmemprof-agent.service", "kmemprof-agent-daemonset.yaml", "kmemprof-grafana.json"}

// deploySource is where deployFiles are in the tree.
const deploySource = "cmd/kmemprof/deploy"

// generatedDocs are made by the release build from the binary's own help
// (kmemprof man, kmemprof completion) into DIST/docs; the Linux archives
// carry them under docs/, the .deb installs them where man, bash and zsh
// look (debPaths).
var generatedDocs = []string{"kmemprof.8", "kmemprof.bash", "_kmemprof"}

var debPaths = map[string]string{
	"kmemprof.8":    "usr/share/man/man8/kmemprof.8.gz",
	"kmemprof.bash": "usr/share/bash-completion/completions/kmemprof",
	"_kmemprof":     "usr/share/zsh/vendor-completions/_kmemprof",
}

// unitPath is where the .deb installs the agent's systemd unit.
const unitPath = "lib/systemd/system/kmemprof-agent.service"

func main() {
	version := flag.String("version", "", "release version (from git describe)")
	dist := flag.String("dist", "dist", "directory with the built binaries; archives are written there")
	gpl := flag.String("gpl", "", "GPL-3.0 text to ship with the Windows build (golang-etw's LICENSE)")
	flag.Parse()
	if err := run(*version, *dist, *gpl, "."); err != nil {
		fmt.Fprintln(os.Stderr, "mkrelease:", err)
		os.Exit(1)
	}
}

var versionRE = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z.+~_-]*$`)

func run(version, dist, gpl, docDir string) error {
	if !versionRE.MatchString(version) {
		return fmt.Errorf("bad -version %q", version)
	}
	var written []string
	for _, t := range targets {
		bin, err := os.ReadFile(filepath.Join(dist, t.goos+"-"+t.goarch, t.exe))
		if err != nil {
			return err
		}
		if err := checkBinary(t, bin); err != nil {
			return fmt.Errorf("%s/%s: %w", t.goos, t.goarch, err)
		}
		files := map[string][]byte{t.exe: bin}
		for _, d := range docs {
			b, err := os.ReadFile(filepath.Join(docDir, d))
			if err != nil {
				return err
			}
			files[d] = b
		}
		if t.goos == "linux" {
			for _, d := range generatedDocs {
				b, err := os.ReadFile(filepath.Join(dist, "docs", d))
				if err != nil {
					return fmt.Errorf("%w (the release build makes it with kmemprof man / completion)", err)
				}
				files["docs/"+d] = b
			}
			for _, d := range deployFiles {
				b, err := os.ReadFile(filepath.Join(docDir, deploySource, d))
				if err != nil {
					return err
				}
				files["deploy/"+d] = b
			}
		}
		name := fmt.Sprintf("kmemprof-%s-%s-%s", version, t.goos, t.goarch)
		var out []byte
		if t.goos == "windows" {
			if gpl == "" {
				return errors.New("the Windows build needs -gpl (the GPL-3.0 text, see NOTICE)")
			}
			if files["COPYING.GPL-3.0"], err = os.ReadFile(gpl); err != nil {
				return err
			}
			// The recording profile for 'kmemprof convert'.
			if files["pool.wprp"], err = os.ReadFile(filepath.Join(docDir, "etw", "pool.wprp")); err != nil {
				return err
			}
			name += ".zip"
			out, err = zipFiles(files)
		} else {
			name += ".tar.gz"
			out, err = tarFiles(strings.TrimSuffix(name, ".tar.gz")+"/", files, t.exe)
		}
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dist, name), out, 0o644); err != nil {
			return err
		}
		written = append(written, name)
		if t.debArch != "" {
			deb, err := debPackage(version, t.debArch, bin, files)
			if err != nil {
				return err
			}
			dn := fmt.Sprintf("kmemprof_%s_%s.deb", debVersion(version), t.debArch)
			if err := os.WriteFile(filepath.Join(dist, dn), deb, 0o644); err != nil {
				return err
			}
			written = append(written, dn)
		}
	}
	sort.Strings(written)
	var sums bytes.Buffer
	for _, n := range written {
		b, err := os.ReadFile(filepath.Join(dist, n))
		if err != nil {
			return err
		}
		h := sha256.Sum256(b)
		fmt.Fprintf(&sums, "%s  %s\n", hex.EncodeToString(h[:]), n)
	}
	if err := os.WriteFile(filepath.Join(dist, "SHA256SUMS"), sums.Bytes(), 0o644); err != nil {
		return err
	}
	if err := check(version, dist); err != nil {
		return fmt.Errorf("checking what was written: %w", err)
	}
	for _, n := range append(written, "SHA256SUMS") {
		fmt.Println(filepath.Join(dist, n))
	}
	return nil
}

// checkBinary: Linux binaries are static executables of the target's
// architecture (no interpreter, no shared libraries); the Windows one is an
// amd64 PE.
func checkBinary(t target, bin []byte) error {
	if t.goos == "windows" {
		f, err := pe.NewFile(bytes.NewReader(bin))
		if err != nil {
			return fmt.Errorf("not a PE executable: %w", err)
		}
		if f.Machine != pe.IMAGE_FILE_MACHINE_AMD64 {
			return fmt.Errorf("PE machine %#x, want amd64", f.Machine)
		}
		return nil
	}
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return fmt.Errorf("not an ELF executable: %w", err)
	}
	if f.Machine != t.machine {
		return fmt.Errorf("ELF machine %v, want %v", f.Machine, t.machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked (it has an interpreter): build with CGO_ENABLED=0")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		return fmt.Errorf("needs shared libraries %v", libs)
	}
	return nil
}

// Archives are reproducible: fixed times and modes. Zip's DOS times start
// in 1980.
var (
	epoch    = time.Unix(0, 0).UTC()
	zipEpoch = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
)

// tarFiles is a release tarball: files under prefix, exe executable.
func tarFiles(prefix string, files map[string][]byte, exe string) ([]byte, error) {
	var entries []tarEntry
	for _, n := range sortedNames(files) {
		mode := int64(0o644)
		if n == exe {
			mode = 0o755
		}
		entries = append(entries, tarEntry{prefix + n, files[n], mode})
	}
	return tarGz(entries, false)
}

func zipFiles(files map[string][]byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, n := range sortedNames(files) {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: n, Method: zip.Deflate, Modified: zipEpoch})
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(files[n]); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func sortedNames(m map[string][]byte) []string {
	var ns []string
	for n := range m {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	return ns
}

// debVersion makes a git describe string a Debian version: it must start
// with a digit ("0~g1a2b3c" for an untagged commit).
func debVersion(v string) string {
	v = strings.TrimPrefix(v, "v")
	if v == "" || v[0] < '0' || v[0] > '9' {
		v = "0~" + v
	}
	return strings.ReplaceAll(v, "-", "~")
}

// debPackage builds a .deb: an ar archive of debian-binary, control.tar.gz
// and data.tar.gz (/usr/bin/kmemprof, its docs, the agent's systemd unit,
// not enabled, and DaemonSet).
func debPackage(version, arch string, bin []byte, files map[string][]byte) ([]byte, error) {
	control := fmt.Sprintf(`Package: kmemprof
Version: %s
Architecture: %s
Maintainer: kmemprof developers
Section: devel
Priority: optional
Homepage: https://github.com/kmemprof/kmemprof
Description: kernel memory leak profiler (eBPF, pprof output)
 kmemprof traces the kernel's slab, page and percpu allocations and frees
 with eBPF and writes the allocations still outstanding, by kernel call
 stack, as a pprof profile.
`, debVersion(version), arch)
	ctl, err := tarGz([]tarEntry{{"./control", []byte(control), 0o644}}, true)
	if err != nil {
		return nil, err
	}
	data, err := tarGz([]tarEntry{
		{"./usr/bin/kmemprof", bin, 0o755},
		{"./usr/share/doc/kmemprof/README.md", files["README.md"], 0o644},
		{"./" + unitPath, files["deploy/kmemprof-agent.service"], 0o644},
		{"./" + debPaths["kmemprof.8"], gzipped(files["docs/kmemprof.8"]), 0o644},
		{"./" + debPaths["kmemprof.bash"], files["docs/kmemprof.bash"], 0o644},
		{"./" + debPaths["_kmemprof"], files["docs/_kmemprof"], 0o644},
		{"./usr/share/doc/kmemprof/kmemprof-agent-daemonset.yaml", files["deploy/kmemprof-agent-daemonset.yaml"], 0o644},
		{"./usr/share/doc/kmemprof/kmemprof-grafana.json", files["deploy/kmemprof-grafana.json"], 0o644},
		{"./usr/share/doc/kmemprof/copyright", append(append([]byte{}, files["NOTICE"]...), append([]byte("\n"), files["LICENSE"]...)...), 0o644},
	}, true)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.WriteString("!<arch>\n")
	for _, m := range []struct {
		name string
		b    []byte
	}{{"debian-binary", []byte("2.0\n")}, {"control.tar.gz", ctl}, {"data.tar.gz", data}} {
		fmt.Fprintf(&buf, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", m.name, 0, 0, 0, "100644", len(m.b))
		buf.Write(m.b)
		if len(m.b)%2 == 1 {
			buf.WriteByte('\n')
		}
	}
	return buf.Bytes(), nil
}

type tarEntry struct {
	name string
	b    []byte
	mode int64
}

// tarGz writes entries as a gzipped tar, owned by root, with fixed times;
// with dirs, each entry's parent directories come first (as dpkg wants).
func tarGz(entries []tarEntry, dirs bool) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	written := map[string]bool{}
	for _, e := range entries {
		var parents []string
		for d := filepath.Dir(strings.TrimPrefix(e.name, "./")); dirs && d != "." && d != "/" && !written[d]; d = filepath.Dir(d) {
			parents = append([]string{d}, parents...)
			written[d] = true
		}
		for _, d := range parents {
			if err := tw.WriteHeader(&tar.Header{Name: "./" + d + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch, Uname: "root", Gname: "root", Format: tar.FormatPAX}); err != nil {
				return nil, err
			}
		}
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: e.mode, Size: int64(len(e.b)), ModTime: epoch, Uname: "root", Gname: "root", Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// check reads back every archive of version in dist and the checksums.
func check(version, dist string) error {
	sums, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		return err
	}
	listed := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if !ok {
			return fmt.Errorf("SHA256SUMS line %q", line)
		}
		listed[name] = sum
	}
	for name, sum := range listed {
		b, err := os.ReadFile(filepath.Join(dist, name))
		if err != nil {
			return err
		}
		if h := sha256.Sum256(b); hex.EncodeToString(h[:]) != sum {
			return fmt.Errorf("%s: checksum differs from SHA256SUMS", name)
		}
	}
	for _, t := range targets {
		base := fmt.Sprintf("kmemprof-%s-%s-%s", version, t.goos, t.goarch)
		var got map[string][]byte
		var name string
		if t.goos == "windows" {
			name = base + ".zip"
			got, err = readZip(filepath.Join(dist, name))
		} else {
			name = base + ".tar.gz"
			got, err = readTar(filepath.Join(dist, name), base+"/")
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if _, ok := listed[name]; !ok {
			return fmt.Errorf("%s is not in SHA256SUMS", name)
		}
		want := append([]string{t.exe}, docs...)
		if t.goos == "windows" {
			want = append(want, "COPYING.GPL-3.0", "pool.wprp")
		} else {
			for _, d := range deployFiles {
				want = append(want, "deploy/"+d)
			}
			for _, d := range generatedDocs {
				want = append(want, "docs/"+d)
			}
		}
		for _, w := range want {
			if len(got[w]) == 0 {
				return fmt.Errorf("%s has no %s", name, w)
			}
		}
		if err := checkBinary(t, got[t.exe]); err != nil {
			return fmt.Errorf("%s: %s: %w", name, t.exe, err)
		}
		if t.debArch != "" {
			dn := fmt.Sprintf("kmemprof_%s_%s.deb", debVersion(version), t.debArch)
			if err := checkDeb(filepath.Join(dist, dn), t); err != nil {
				return fmt.Errorf("%s: %w", dn, err)
			}
		}
	}
	return nil
}

func readTar(path, prefix string) (map[string][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	return readTarStream(zr, prefix)
}

func readTarStream(r io.Reader, prefix string) (map[string][]byte, error) {
	out := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name, ok := strings.CutPrefix(h.Name, prefix)
		if !ok {
			return nil, fmt.Errorf("%s is outside %s", h.Name, prefix)
		}
		if out[name], err = io.ReadAll(tr); err != nil {
			return nil, err
		}
	}
}

func readZip(path string) (map[string][]byte, error) {
	zr, err := zip.OpenReader(path)
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	out := map[string][]byte{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			return nil, err
		}
		out[f.Name], err = io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// checkDeb reads a .deb's ar members and its data: /usr/bin/kmemprof must
// be the static binary of the architecture.
func checkDeb(path string, t target) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(b, []byte("!<arch>\n")) {
		return errors.New("not an ar archive")
	}
	members := map[string][]byte{}
	var order []string
	for p := 8; p+60 <= len(b); {
		hdr := b[p : p+60]
		name := strings.TrimSpace(string(hdr[:16]))
		var size int
		if _, err := fmt.Sscan(strings.TrimSpace(string(hdr[48:58])), &size); err != nil {
			return fmt.Errorf("ar member %s: bad size", name)
		}
		p += 60
		if p+size > len(b) {
			return fmt.Errorf("ar member %s truncated", name)
		}
		members[name] = b[p : p+size]
		order = append(order, name)
		p += size + size%2
	}
	if strings.Join(order, ",") != "debian-binary,control.tar.gz,data.tar.gz" || string(members["debian-binary"]) != "2.0\n" {
		return fmt.Errorf("ar members %v", order)
	}
	zr, err := gzip.NewReader(bytes.NewReader(members["control.tar.gz"]))
	if err != nil {
		return err
	}
	ctl, err := readTarStream(zr, "./")
	if err != nil {
		return err
	}
	if !bytes.Contains(ctl["control"], []byte("Architecture: "+t.debArch+"\n")) {
		return fmt.Errorf("control file:\n%s", ctl["control"])
	}
	zr, err = gzip.NewReader(bytes.NewReader(members["data.tar.gz"]))
	if err != nil {
		return err
	}
	data, err := readTarStream(zr, "./")
	if err != nil {
		return err
	}
	// The unit the package installs runs the binary it installs.
	if !bytes.Contains(data[unitPath], []byte("ExecStart=/usr/bin/kmemprof ")) {
		return fmt.Errorf("%s does not run /usr/bin/kmemprof:\n%s", unitPath, data[unitPath])
	}
	for _, p := range debPaths {
		if len(data[p]) == 0 {
			return fmt.Errorf("no /%s", p)
		}
	}
	if len(data["usr/share/doc/kmemprof/kmemprof-agent-daemonset.yaml"]) == 0 {
		return errors.New("no kmemprof-agent-daemonset.yaml in /usr/share/doc/kmemprof")
	}
	return checkBinary(t, data["usr/bin/kmemprof"])
}

// gzipped is b compressed, as Debian keeps manual pages.
func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}
