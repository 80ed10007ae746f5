package main

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"golang.org/x/sys/unix"

	"github.com/kmemprof/kmemprof/bpf/bpftest"
)

// untar extracts a tar stream into dir (regular files and directories).
func untar(t *testing.T, r io.Reader, dir string) {
	t.Helper()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(p, filepath.Clean(dir)+string(filepath.Separator)) {
			t.Fatalf("tar entry %q leaves the directory", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o777)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			f.Close()
		default:
			t.Fatalf("tar entry %q of type %c", h.Name, h.Typeflag)
		}
	}
}

// daemonSetSpec reads the DaemonSet's container args and env values.
func daemonSetSpec(t *testing.T) (args []string, env map[string]string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("deploy", "kmemprof-agent-daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	for i, line := range lines {
		if strings.TrimSpace(line) != "args:" {
			continue
		}
		for _, l := range lines[i+1:] {
			item, ok := strings.CutPrefix(strings.TrimSpace(l), "- ")
			if !ok {
				break
			}
			args = append(args, item)
		}
		break
	}
	if len(args) == 0 {
		t.Fatal("no args in the DaemonSet")
	}
	env = map[string]string{}
	for _, e := range regexp.MustCompile(`(?m)^\s*- name: (\S+)\n\s*value: (\S+)$`).FindAllSubmatch(b, -1) {
		env[string(e[1])] = string(e[2])
	}
	return args, env
}

// TestImage builds the image with `make image`, unpacks its OCI archive,
// takes this machine's architecture's image, and runs its entrypoint with
// the DaemonSet's arguments and environment (the Pyroscope URL and the
// token file pointed at this test's) under the DaemonSet's capabilities
// only: the agent starts watching, pushes the kernel's counts with the
// token, holds no BPF program, and exits 0 on SIGTERM.
func TestImage(t *testing.T) {
	bpftest.Require(t)
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatal("make is needed to build the image")
	}
	dist := t.TempDir()
	build := exec.Command("make", "-C", "../..", "image", "DIST="+dist, "VERSION=test")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	archive := filepath.Join(dist, "kmemprof-test-image.oci.tar")
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	oci := t.TempDir()
	untar(t, f, oci)
	f.Close()
	idx, err := layout.ImageIndexFromPath(oci)
	if err != nil {
		t.Fatalf("the archive is no OCI image layout: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var archs []string
	root := t.TempDir()
	for _, d := range im.Manifests {
		if d.Platform == nil || d.Platform.OS != "linux" {
			t.Fatalf("manifest %s for %+v", d.Digest, d.Platform)
		}
		archs = append(archs, d.Platform.Architecture)
		if d.Platform.Architecture != runtime.GOARCH {
			continue
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(cf.Config.Entrypoint, []string{"/kmemprof"}) || cf.Architecture != runtime.GOARCH || cf.OS != "linux" {
			t.Fatalf("image config: entrypoint %v, %s/%s", cf.Config.Entrypoint, cf.OS, cf.Architecture)
		}
		rc := mutate.Extract(img)
		untar(t, rc, root)
		rc.Close()
	}
	slices.Sort(archs)
	if !slices.Equal(archs, []string{"amd64", "arm64"}) {
		t.Errorf("the image's architectures: %v, want amd64 and arm64", archs)
	}
	entry := filepath.Join(root, "kmemprof")
	if st, err := os.Stat(entry); err != nil || st.Mode()&0o111 == 0 {
		t.Fatalf("the image has no executable /kmemprof: %v", err)
	}

	// The DaemonSet's arguments, environment and capabilities.
	f2 := &fakePyroscope{}
	url := startFakePyroscope(t, f2)
	args, env := daemonSetSpec(t)
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env["PYROSCOPE_URL"] = url
	env["KMEMPROF_PYROSCOPE_TOKEN_FILE"] = token
	for i, a := range args {
		args[i] = regexp.MustCompile(`\$\((\w+)\)`).ReplaceAllStringFunc(a, func(v string) string { return env[v[2:len(v)-1]] })
	}
	if args[0] != "agent" {
		t.Fatalf("the DaemonSet runs %v", args)
	}
	caps := deployCaps(t)
	var kept []string
	bnd := boundingSet(t)
	for _, c := range caps {
		if bnd&(1<<capNumbers[c]) != 0 {
			kept = append(kept, c)
		}
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), mainEnv+"=1", keepCapsEnv+"="+strings.Join(kept, ","), testExecEnv+"="+entry)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd, stderr := startAgentCmd(t, cmd)
	var pushed bool
	for deadline := time.Now().Add(60 * time.Second); !pushed; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the image's agent pushed nothing in 60 s: %s", stderr.String())
		}
		reqs, hdrs := f2.received()
		for i, r := range reqs {
			for _, l := range r.Series[0].Labels {
				if l.Name == "kmemprof_source" && l.Value == "slabinfo" {
					pushed = true
					if got := hdrs[i].Get("Authorization"); got != "Bearer s3cret" {
						t.Errorf("pushed with Authorization %q, want the token file's", got)
					}
				}
			}
		}
	}
	if exe, _ := os.Readlink("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/exe"); exe != entry {
		t.Errorf("the process runs %s, not the image's entrypoint %s", exe, entry)
	}
	if eff := capEff(t, cmd.Process.Pid); eff&(1<<unix.CAP_SYS_ADMIN) != 0 {
		t.Errorf("the agent kept CAP_SYS_ADMIN (CapEff %#x)", eff)
	}
	if n := heldProgs(t, cmd.Process.Pid); n != 0 {
		t.Errorf("watching, the image's agent holds %d BPF programs", n)
	}
	stopAgent(t, cmd, stderr)
	t.Logf("image %s: %v; the agent ran with %v: %s", filepath.Base(archive), archs, kept, strings.SplitN(stderr.String(), "\n", 2)[0])
}
