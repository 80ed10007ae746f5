package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const tagsPooltag = "rem pooltag.txt for the tags command tests\r\n" +
	"Leak - myleak.sys - Leaky test driver\r\n" +
	"Ntf? - ntfs.sys   - NTFS allocations\r\n" +
	"Ntfx - ntfs.sys   - General allocation\r\n" +
	"Cc   - nt!cc      - Cache Manager\r\n" +
	"Only - <unknown>\r\n" +
	"this line is not an entry\r\n"

// tagsFixture writes a pooltag file and a drivers directory and returns
// their paths.
func tagsFixture(t *testing.T) (pooltag, drivers string) {
	t.Helper()
	dir := t.TempDir()
	pooltag = filepath.Join(dir, "pooltag.txt")
	drivers = filepath.Join(dir, "drivers")
	files := map[string]string{
		pooltag:                                  tagsPooltag,
		filepath.Join(drivers, "myleak.sys"):     "MZ\x90\x00..\x41\xb8Leak\x00\x00",
		filepath.Join(drivers, "other.SYS"):      "MZ Leak and Cc  here",
		filepath.Join(drivers, "readme.txt"):     "Ntfx Leak",
		filepath.Join(drivers, "sub", "in.sys"):  "Ntfx",
		filepath.Join(drivers, "tagless.sys"):    "MZ nothing to see",
		filepath.Join(dir, "notpooltag.txt"):     "hello\nworld\n",
		filepath.Join(dir, "nodrivers", "a.txt"): "Leak",
	}
	for name, data := range files {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return pooltag, drivers
}

func TestTags(t *testing.T) {
	pooltag, drivers := tagsFixture(t)
	dir := filepath.Dir(pooltag)
	for _, tc := range []struct {
		name    string
		args    []string
		stdout  string // exact; FILE and DIR stand for the fixture paths
		stderr  string // substring; "" means stderr must be empty
		noteHas string // substring of stdout after the blocks
	}{
		{
			name: "pooltag and drivers",
			args: []string{"--pooltag", pooltag, "--drivers", drivers, "Leak", "Ntfx", "Cc", "Nope"},
			stdout: "" +
				"Leak  pooltag.txt: myleak.sys - Leaky test driver\n" +
				"      drivers:     myleak.sys, other.SYS\n" +
				"Ntfx  pooltag.txt: ntfs.sys - General allocation\n" +
				"                   ntfs.sys - NTFS allocations (entry \"Ntf?\")\n" +
				"      drivers:     no driver in DIR contains it\n" +
				"Cc    pooltag.txt: nt!cc - Cache Manager\n" +
				"      drivers:     other.SYS\n" +
				"Nope  pooltag.txt: not listed in FILE\n" +
				"      drivers:     no driver in DIR contains it\n",
			stderr: `1 line(s) of FILE not understood and ignored (first: line 7`,
		},
		{
			name: "options after tags",
			args: []string{"Leak", "--drivers", drivers, "Only", "--pooltag", pooltag},
			stdout: "" +
				"Leak  pooltag.txt: myleak.sys - Leaky test driver\n" +
				"      drivers:     myleak.sys, other.SYS\n" +
				"Only  pooltag.txt: <unknown>\n" +
				"      drivers:     no driver in DIR contains it\n",
			stderr: "not understood",
		},
		{
			name: "double dash ends options",
			args: []string{"--drivers", drivers, "--", "Leak", "-x"},
			stdout: "" +
				"Leak  drivers:     myleak.sys, other.SYS\n" +
				"-x    drivers:     no driver in DIR contains it\n",
			noteHas: "no --pooltag FILE given, so only driver files were searched.\n" +
				"      pooltag.txt ships with the Debugging Tools for Windows as triage\\pooltag.txt,\n" +
				"      e.g. " + pooltagPath + "\n",
		},
		{
			name:    "repeated tag printed once",
			args:    []string{"--drivers", drivers, "Cc", "Cc"},
			stdout:  "Cc    drivers:     other.SYS\n",
			noteHas: "--pooltag FILE",
		},
		{
			name: "pooltag only",
			args: []string{"--pooltag", pooltag, "--drivers", "", "Ntf1", "Leak"},
			stdout: "" +
				"Ntf1  pooltag.txt: ntfs.sys - NTFS allocations (entry \"Ntf?\")\n" +
				"Leak  pooltag.txt: myleak.sys - Leaky test driver\n",
			stderr:  "not understood",
			noteHas: "no driver files searched: give --drivers DIR",
		},
		{
			name:   "empty drivers directory",
			args:   []string{"--pooltag", pooltag, "--drivers", filepath.Join(dir, "nodrivers"), "Leak"},
			stdout: "Leak  pooltag.txt: myleak.sys - Leaky test driver\n      drivers:     no driver in " + filepath.Join(dir, "nodrivers") + " contains it\n",
			stderr: "holds no .sys files",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runInProcess(append([]string{"tags"}, tc.args...)...)
			if code != exitOK {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			subst := strings.NewReplacer("FILE", pooltag, "DIR", drivers)
			blocks, note, _ := strings.Cut(out, "\nnote: ")
			if want := subst.Replace(tc.stdout); blocks != want {
				t.Errorf("stdout:\n%s\nwant:\n%s", blocks, want)
			}
			if tc.noteHas == "" && note != "" {
				t.Errorf("unexpected note: %q", note)
			}
			if !strings.Contains(note, tc.noteHas) {
				t.Errorf("note %q does not contain %q", note, tc.noteHas)
			}
			if want := subst.Replace(tc.stderr); want == "" && errOut != "" || !strings.Contains(errOut, want) {
				t.Errorf("stderr %q, want it to contain %q", errOut, want)
			}
		})
	}
}

func TestTagsUnreadableDriver(t *testing.T) {
	_, drivers := tagsFixture(t)
	// A dangling link cannot be opened, even by root (unlike a chmod 000 file).
	if err := os.Symlink(filepath.Join(drivers, "gone"), filepath.Join(drivers, "broken.sys")); err != nil {
		t.Skipf("cannot make a symlink here: %v", err)
	}
	code, out, errOut := runInProcess("tags", "--drivers", drivers, "Leak")
	if code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if !strings.HasPrefix(out, "Leak  drivers:     myleak.sys, other.SYS\n") {
		t.Errorf("stdout %q lacks the other drivers' answer", out)
	}
	for _, want := range []string{"warning: 1 driver file(s)", "could not be read", "broken.sys"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr %q does not contain %q", errOut, want)
		}
	}
}

func TestTagsHelp(t *testing.T) {
	for _, args := range [][]string{{"tags", "--help"}, {"tags", "-h"}, {"help", "tags"}, {"tags", "Leak", "--help"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, out, errOut := runInProcess(args...)
			if code != exitOK || errOut != "" {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			for _, want := range []string{
				"Usage: kmemprof tags", "--pooltag FILE", "--drivers DIR", `triage\pooltag.txt`,
				"Debugging Tools for Windows", "ExAllocatePoolWithTag", `%SystemRoot%\System32\drivers`,
				"padded with", "case-sensitive", "Examples:",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("help does not mention %q", want)
				}
			}
		})
	}
	_, out, _ := runInProcess("--help")
	if !strings.Contains(out, "\n  tags ") {
		t.Errorf("main usage does not list the tags command")
	}
}

func TestTagsBadInput(t *testing.T) {
	pooltag, drivers := tagsFixture(t)
	dir := filepath.Dir(pooltag)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no tag", []string{"--drivers", drivers}, exitUsage, "no pool tag given"},
		{"only options after double dash", []string{"--drivers", drivers, "--"}, exitUsage, "no pool tag given"},
		{"tag too long", []string{"--drivers", drivers, "Leaky"}, exitUsage, `tag "Leaky" is longer than 4 characters`},
		{"tag too long in bytes", []string{"--drivers", drivers, "Lé€"}, exitUsage, "longer than 4 characters"},
		{"empty tag", []string{"--drivers", drivers, ""}, exitUsage, "empty tag"},
		{"unknown flag", []string{"--driver", drivers, "Leak"}, exitUsage, "-driver"},
		{"flag without value", []string{"Leak", "--pooltag"}, exitUsage, "option --pooltag needs a value"},
		{"nothing to look in", []string{"--drivers", "", "Leak"}, exitUsage, `nothing to look in: give --pooltag FILE (triage\pooltag.txt`},
		{"empty pooltag", []string{"--pooltag", "", "--drivers", drivers, "Leak"}, exitUsage, "--pooltag needs a file name"},
		{"missing drivers dir", []string{"--drivers", filepath.Join(dir, "nope"), "Leak"}, exitUsage, "not a directory"},
		{"drivers is a file", []string{"--drivers", pooltag, "Leak"}, exitUsage, "not a directory"},
		{"missing pooltag", []string{"--pooltag", filepath.Join(dir, "nope.txt"), "--drivers", drivers, "Leak"}, exitError, "reading --pooltag file"},
		{"pooltag is a directory", []string{"--pooltag", drivers, "--drivers", drivers, "Leak"}, exitError, "--pooltag " + drivers},
		{"not a pooltag file", []string{"--pooltag", filepath.Join(dir, "notpooltag.txt"), "Leak"}, exitError, "is not a pooltag.txt: no pool tag entries"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runInProcess(append([]string{"tags"}, tc.args...)...)
			if code != tc.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.code, errOut)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q does not contain %q", errOut, tc.want)
			}
			if !strings.HasPrefix(errOut, "kmemprof tags: ") {
				t.Errorf("stderr %q does not start with the command name", errOut)
			}
			if tc.code == exitUsage && !strings.Contains(errOut, "kmemprof tags --help") {
				t.Errorf("usage error %q does not point to --help", errOut)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
		})
	}
}

func TestDefaultDriversDir(t *testing.T) {
	for _, tc := range []struct {
		name string
		goos string
		env  map[string]string
		want string
	}{
		{"linux", "linux", map[string]string{"SystemRoot": `C:\Windows`}, ""},
		{"windows", "windows", map[string]string{"SystemRoot": `D:\WINNT`}, `D:\WINNT\System32\drivers`},
		{"windows trailing backslash", "windows", map[string]string{"SystemRoot": `D:\WINNT\`}, `D:\WINNT\System32\drivers`},
		{"windows without SystemRoot", "windows", nil, `C:\Windows\System32\drivers`},
		{"32-bit process on 64-bit windows", "windows", map[string]string{"SystemRoot": `C:\Windows`, "PROCESSOR_ARCHITEW6432": "AMD64"}, `C:\Windows\Sysnative\drivers`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := defaultDriversDir(tc.goos, func(k string) string { return tc.env[k] })
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
