package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// buildTargets builds a tiny static program for every target into dist.
func buildTargets(t *testing.T, dist string) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "main.go")
	if err := os.WriteFile(src, []byte("package main\nfunc main() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dist, "docs"), 0o755)
	for _, d := range generatedDocs {
		if err := os.WriteFile(filepath.Join(dist, "docs", d), []byte(d+" text\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tg := range targets {
		out := filepath.Join(dist, tg.goos+"-"+tg.goarch, tg.exe)
		cmd := exec.Command("go", "build", "-o", out, src)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+tg.goos, "GOARCH="+tg.goarch, "GOFLAGS=", "GO111MODULE=off")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building for %s/%s: %v\n%s", tg.goos, tg.goarch, err, b)
		}
	}
}

func docDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	os.Mkdir(filepath.Join(d, "etw"), 0o755)
	os.MkdirAll(filepath.Join(d, deploySource), 0o755)
	files := append(docs, "GPL", "etw/pool.wprp")
	for _, f := range deployFiles {
		files = append(files, deploySource+"/"+f)
	}
	if err := os.WriteFile(filepath.Join(d, deploySource, "kmemprof-agent.service"), []byte("ExecStart=/usr/bin/kmemprof agent\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, ".service") {
			continue
		}
		if err := os.WriteFile(filepath.Join(d, f), []byte(f+" text\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// TestRelease packs and checks a release of tiny static programs: every
// archive and package is written, listed in SHA256SUMS, and read back.
func TestRelease(t *testing.T) {
	dist, docs := t.TempDir(), docDir(t)
	buildTargets(t, dist)
	if err := run("1.2.3-4-gabcdef", dist, filepath.Join(docs, "GPL"), docs); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{
		"kmemprof-1.2.3-4-gabcdef-linux-amd64.tar.gz", "kmemprof-1.2.3-4-gabcdef-linux-arm64.tar.gz",
		"kmemprof-1.2.3-4-gabcdef-windows-amd64.zip", "kmemprof_1.2.3~4~gabcdef_amd64.deb",
		"kmemprof_1.2.3~4~gabcdef_arm64.deb",
	} {
		sums, _ := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
		if !strings.Contains(string(sums), "  "+name+"\n") {
			t.Errorf("SHA256SUMS does not list %s:\n%s", name, sums)
		}
	}
	zip, err := readZip(filepath.Join(dist, "kmemprof-1.2.3-4-gabcdef-windows-amd64.zip"))
	if err != nil {
		t.Fatal(err)
	}
	if string(zip["pool.wprp"]) != "etw/pool.wprp text\n" {
		t.Errorf("the Windows zip's pool.wprp is %q", zip["pool.wprp"])
	}
	if string(zip["COPYING.GPL-3.0"]) != "GPL text\n" {
		t.Errorf("the Windows zip's GPL text is %q", zip["COPYING.GPL-3.0"])
	}
	// A changed archive no longer matches its checksum.
	p := filepath.Join(dist, "kmemprof_1.2.3~4~gabcdef_arm64.deb")
	b, _ := os.ReadFile(p)
	os.WriteFile(p, append(b, 0), 0o644)
	if err := check("1.2.3-4-gabcdef", dist); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("check after changing a package: %v", err)
	}
}

// TestReleaseRefusesDynamic: a dynamically linked Linux binary is refused.
func TestReleaseRefusesDynamic(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("needs a dynamically linked linux/amd64 program")
	}
	dyn, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true(1)")
	}
	dist, docs := t.TempDir(), docDir(t)
	buildTargets(t, dist)
	b, err := os.ReadFile(dyn)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dist, "linux-amd64", "kmemprof"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	err = run("1.0", dist, filepath.Join(docs, "GPL"), docs)
	if err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Errorf("a dynamic binary was packed: %v", err)
	}
}

func TestBadVersion(t *testing.T) {
	if err := run("../x", t.TempDir(), "", "."); err == nil {
		t.Error("a version with a path in it was accepted")
	}
}

func TestDebVersion(t *testing.T) {
	for in, want := range map[string]string{"v1.2.0": "1.2.0", "1.2.0-3-gabc": "1.2.0~3~gabc", "e632d50-dirty": "0~e632d50~dirty"} {
		if got := debVersion(in); got != want {
			t.Errorf("debVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestReleaseUnitRunsPackagedBinary: a unit that runs another path than the
// one the .deb installs is refused.
func TestReleaseUnitRunsPackagedBinary(t *testing.T) {
	dist, docs := t.TempDir(), docDir(t)
	buildTargets(t, dist)
	unit := filepath.Join(docs, deploySource, "kmemprof-agent.service")
	if err := os.WriteFile(unit, []byte("ExecStart=/usr/local/bin/kmemprof agent\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run("1.2.3", dist, filepath.Join(docs, "GPL"), docs); err == nil || !strings.Contains(err.Error(), "does not run /usr/bin/kmemprof") {
		t.Errorf("a unit running /usr/local/bin/kmemprof: %v", err)
	}
}

// TestShippedUnitRunsPackagedBinary: the unit in the tree runs the path the
// .deb installs.
func TestShippedUnitRunsPackagedBinary(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", deploySource, "kmemprof-agent.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "\nExecStart=/usr/bin/kmemprof ") {
		t.Errorf("the unit does not run /usr/bin/kmemprof:\n%s", b)
	}
}
