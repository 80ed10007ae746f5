package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kmemprof/kmemprof/bpf"
	"github.com/kmemprof/kmemprof/bpf/bpftest"
	"github.com/kmemprof/kmemprof/tracer"
)

// Kernel addresses of the served test profile.
const (
	sAddrKmalloc   = 0xffffffff81300020 // __kmalloc_cache_noprof (leaf)
	sAddrCache     = 0xffffffff81300120 // kmem_cache_alloc_noprof (leaf)
	sAddrEmptyFile = 0xffffffff81500030
	sAddrPseudo    = 0xffffffff81500130
	sAddrAnonInode = 0xffffffff81500230
	sAddrEventfd   = 0xffffffff81600040
	sAddrSysEvfd   = 0xffffffff81600140
	sAddrSyscall   = 0xffffffff81e00050
)

// serveSymbols names the frames of the test profile: the eventfd leak of
// the README (an eventfd_ctx in kmalloc-64, a filp from alloc_empty_file).
type serveSymbols map[uint64]string

func (s serveSymbols) Lookup(pc uint64) (tracer.Symbol, bool) {
	for _, a := range []uint64{pc, pc + 1} { // the leaf, or a return address less one
		if n, ok := s[a]; ok {
			return tracer.Symbol{Name: n, Start: a}, true
		}
	}
	return tracer.Symbol{}, false
}

// writeServeProfile writes a small kmemprof profile built from a hand-made
// snapshot and returns its path. Its only stacks go through do_eventfd.
func writeServeProfile(t testing.TB) string {
	t.Helper()
	sym := serveSymbols{
		sAddrKmalloc:   "__kmalloc_cache_noprof",
		sAddrCache:     "kmem_cache_alloc_noprof",
		sAddrEmptyFile: "alloc_empty_file",
		sAddrPseudo:    "alloc_file_pseudo",
		sAddrAnonInode: "anon_inode_getfile_fmode",
		sAddrEventfd:   "do_eventfd",
		sAddrSysEvfd:   "__x64_sys_eventfd2",
		sAddrSyscall:   "do_syscall_64",
	}
	taken := time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)
	kCtx := tracer.Key{Kind: tracer.KindSlab, Stack: 1, Cache: "kmalloc-64", Comm: "leaker", PID: 42}
	kFile := tracer.Key{Kind: tracer.KindSlab, Stack: 2, Cache: "filp", Comm: "leaker", PID: 42}
	snap := &tracer.Snapshot{
		Platform: bpf.Platform,
		Meta: tracer.Meta{
			Platform:   "linux",
			Kernel:     "6.18.0-test",
			AttachMode: "raw_tp",
			Hooks:      []string{"kmem:kmalloc", "kmem:kfree", "kmem:kmem_cache_alloc", "kmem:kmem_cache_free"},
			Start:      taken.Add(-10 * time.Second),
			Duration:   10 * time.Second,
		},
		Stacks: map[tracer.StackID][]uint64{
			1: {sAddrKmalloc, sAddrEventfd, sAddrSysEvfd, sAddrSyscall},
			2: {sAddrCache, sAddrEmptyFile, sAddrPseudo, sAddrAnonInode, sAddrEventfd, sAddrSysEvfd, sAddrSyscall},
		},
		Taken: taken,
	}
	for i := range 100 {
		ts := taken.Add(-5 * time.Second).UnixNano()
		snap.Records = append(snap.Records,
			tracer.Record{Key: kCtx, Addr: 0xffff888100000000 + uint64(i)*64, BytesReq: 48, BytesAlloc: 64, Time: ts},
			tracer.Record{Key: kFile, Addr: 0xffff888200000000 + uint64(i)*256, BytesReq: 232, BytesAlloc: 256, Time: ts})
	}
	snap.Totals = []tracer.Total{{Key: kCtx, Count: 100, Bytes: 6400}, {Key: kFile, Count: 100, Bytes: 25600}}
	agg, err := tracer.Aggregate(snap, sym, tracer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := agg.Profile()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kmem.pb.gz")
	if err := tracer.WriteProfile(path, p); err != nil {
		t.Fatal(err)
	}
	return path
}

// startServe runs serveProfile on a free loopback port until the test ends
// and returns the UI's URL ("http://127.0.0.1:PORT/").
func startServe(t testing.TB, path string) (url string, stderr *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stderr = new(syncBuffer)
	urls := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- serveProfile(ctx, "127.0.0.1:0", path, stderr, func(u string) { urls <- u })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serveProfile after cancel: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("serveProfile did not return 10 s after its context was cancelled")
		}
	})
	select {
	case url = <-urls:
		return url, stderr
	case err := <-done:
		t.Fatalf("serveProfile returned before serving: %v (stderr %q)", err, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatal("serveProfile did not call ready within 30 s")
	}
	return "", nil
}

func httpGet(t testing.TB, url string, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

func TestServeHTTP(t *testing.T) {
	url, stderr := startServe(t, writeServeProfile(t))
	if !regexp.MustCompile(`^http://127\.0\.0\.1:[1-9][0-9]*/$`).MatchString(url) {
		t.Fatalf("ready URL %q, want http://127.0.0.1:PORT/", url)
	}
	base := strings.TrimSuffix(url, "/")
	for _, tc := range []struct {
		name, path string
		header     map[string]string
		code       int
		want       []string
		notWant    []string
	}{
		// The root redirects to /ui/ and on to the flame graph.
		{"root", "/", nil, http.StatusOK, []string{"do_eventfd", "alloc_empty_file", "stackViewer("}, nil},
		{"flame graph", "/ui/flamegraph", nil, http.StatusOK, []string{"do_eventfd", "__x64_sys_eventfd2", "stackViewer("}, nil},
		// The allocator's frames are a label, not the leaf: Top's flat
		// column names the code that allocated.
		{"top", "/ui/top", nil, http.StatusOK, []string{"do_eventfd", "alloc_empty_file"}, []string{"__kmalloc_cache_noprof", "kmem_cache_alloc_noprof"}},
		{"top inuse_objects", "/ui/top?si=inuse_objects", nil, http.StatusOK, []string{"do_eventfd"}, nil},
		{"download", "/ui/download", nil, http.StatusOK, nil, nil},
		{"unknown page", "/ui/nope", nil, http.StatusNotFound, nil, nil},
		{"outside the UI", "/debug/pprof/", nil, http.StatusNotFound, nil, nil},
		{"localhost Host", "/ui/top", map[string]string{"Host": "localhost"}, http.StatusOK, []string{"do_eventfd"}, nil},
		{"rebound Host", "/ui/top", map[string]string{"Host": "attacker.example:80"}, http.StatusForbidden, []string{"loopback"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := httpGet(t, base+tc.path, tc.header)
			if code != tc.code {
				t.Fatalf("GET %s: status %d, want %d; body %.300q", tc.path, code, tc.code, body)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("GET %s: body does not contain %q", tc.path, w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(body, w) {
					t.Errorf("GET %s: body contains %q", tc.path, w)
				}
			}
		})
	}
	if s := stderr.String(); s != "" {
		t.Errorf("stderr %q, want nothing", s)
	}
}

func TestServeStops(t *testing.T) {
	path := writeServeProfile(t)
	ctx, cancel := context.WithCancel(context.Background())
	urls := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- serveProfile(ctx, "127.0.0.1:0", path, io.Discard, func(u string) { urls <- u })
	}()
	var url string
	select {
	case url = <-urls:
	case err := <-done:
		t.Fatalf("serveProfile: %v", err)
	}
	if code, _ := httpGet(t, url+"ui/top", nil); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serveProfile after cancel: %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serveProfile did not return 10 s after its context was cancelled")
	}
	hostport := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/")
	if c, err := net.DialTimeout("tcp", hostport, time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after the stop", hostport)
	}
}

func TestServeProfileErrors(t *testing.T) {
	dir := t.TempDir()
	notProfile := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notProfile, []byte("not a profile\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := writeServeProfile(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		name, addr, path, want string
	}{
		{"missing file", "127.0.0.1:0", filepath.Join(dir, "nope.pb.gz"), "reading profile"},
		{"not a profile", "127.0.0.1:0", notProfile, "is not a pprof profile"},
		{"directory", "127.0.0.1:0", dir, "reading profile"},
		{"address in use", busy.Addr().String(), good, "listening for the web UI"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			called := false
			err := serveProfile(context.Background(), tc.addr, tc.path, io.Discard, func(string) { called = true })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if called {
				t.Error("ready was called")
			}
		})
	}
}

func TestServeAddr(t *testing.T) {
	for _, tc := range []struct {
		addr   string
		remote bool
		want   string // "" for accepted
	}{
		{"127.0.0.1:8080", false, ""},
		{"127.0.0.1:0", false, ""},
		{"127.1.2.3:8080", false, ""},
		{"[::1]:8080", false, ""},
		{"localhost:8080", false, ""},
		{"LocalHost:8080", false, ""},
		{":8080", false, "listens on every network interface"},
		{"0.0.0.0:8080", false, "listens on every network interface"},
		{"[::]:8080", false, "listens on every network interface"},
		{"10.0.0.5:8080", false, "is not a loopback address"},
		{"example.com:8080", false, "is not a loopback address"},
		{"localhost.example.com:8080", false, "is not a loopback address"},
		{":8080", true, ""},
		{"10.0.0.5:8080", true, ""},
		{"example.com:0", true, ""},
		{"127.0.0.1", false, "want HOST:PORT"},
		{"8080", false, "want HOST:PORT"},
		{"", false, "want HOST:PORT"},
		{"127.0.0.1:", false, "want a port number"},
		{"127.0.0.1:http", false, "want a port number"},
		{"127.0.0.1:65536", false, "want a port number"},
		{"127.0.0.1:-1", true, "want a port number"},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			err := checkHTTPAddr(tc.addr, tc.remote)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("checkHTTPAddr(%q, %v): %v", tc.addr, tc.remote, err)
				}
				return
			}
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Fatalf("checkHTTPAddr(%q, %v) = %v, want a usage error", tc.addr, tc.remote, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("checkHTTPAddr(%q, %v) = %q, want %q", tc.addr, tc.remote, err, tc.want)
			}
			if strings.Contains(tc.want, "loopback") || strings.Contains(tc.want, "every network") {
				for _, w := range []string{"kernel addresses", "--allow-remote", "127.0.0.1:8080"} {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("refusal %q does not mention %q", err, w)
					}
				}
			}
		})
	}
}

func TestIsLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1:8080": true, "127.0.0.1": true, "localhost": true, "LOCALHOST:80": true,
		"[::1]:8080": true, "[::1]": true, "127.9.9.9:1": true,
		"example.com": false, "example.com:8080": false, "10.0.0.1:80": false, "": false,
		"localhost.attacker.example": false, "0.0.0.0:8080": false,
	} {
		if got := isLoopbackHost(host); got != want {
			t.Errorf("isLoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestServeUIURL(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}, "http://127.0.0.1:8080/"},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 8080}, "http://[::1]:8080/"},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 8080}, "http://127.0.0.1:8080/"},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 9}, "http://127.0.0.1:9/"},
		{&net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 80}, "http://192.0.2.1:80/"},
	} {
		if got := uiURL(tc.addr); got != tc.want {
			t.Errorf("uiURL(%v) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}

func TestServeCancelledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := serveProfile(ctx, "127.0.0.1:0", writeServeProfile(t), io.Discard, func(string) { t.Error("ready was called") })
	if err != nil {
		t.Fatalf("serveProfile with a cancelled context: %v, want nil", err)
	}
}

// TestServeDriverFlags checks the FlagSet given to the pprof driver: preset
// values, defaults for the rest, and a failure when the driver does not
// declare a preset flag (a pprof without -no_browser would open a browser).
func TestServeDriverFlags(t *testing.T) {
	f := &driverFlags{args: []string{"k.pb.gz"}, set: map[string]string{"http": "127.0.0.1:1", "no_browser": "true"}}
	if got := *f.String("http", "", ""); got != "127.0.0.1:1" {
		t.Errorf("-http = %q", got)
	}
	if !*f.Bool("no_browser", false, "") {
		t.Error("-no_browser = false")
	}
	if got := *f.Int("seconds", -1, ""); got != -1 {
		t.Errorf("-seconds = %d, want the default", got)
	}
	if got := *f.StringList("diff_base", "", ""); len(got) != 1 || *got[0] != "" {
		t.Errorf("-diff_base = %v, want one empty string", got)
	}
	if args := f.Parse(func() { t.Error("usage called") }); !reflect.DeepEqual(args, []string{"k.pb.gz"}) || f.err != nil {
		t.Errorf("Parse = %q, err %v", args, f.err)
	}

	g := &driverFlags{args: []string{"k.pb.gz"}, set: map[string]string{"http": "127.0.0.1:1", "no_browser": "true"}}
	g.String("http", "", "")
	if args := g.Parse(func() {}); args != nil || g.err == nil || !strings.Contains(g.err.Error(), "-no_browser") {
		t.Errorf("Parse without -no_browser declared = %q, err %v; want no sources and an error naming -no_browser", args, g.err)
	}
}

func TestServeHelp(t *testing.T) {
	for _, args := range [][]string{{"serve", "--help"}, {"serve", "-h"}, {"help", "serve"}, {"serve", "k.pb.gz", "--help"}} {
		code, out, errOut := runInProcess(args...)
		if code != exitOK || errOut != "" {
			t.Fatalf("%q: exit %d, stderr %q", args, code, errOut)
		}
		for _, w := range []string{"kmemprof serve [options] FILE", "--http ADDR", "127.0.0.1:8080", "--allow-remote", "kernel addresses", "ssh -L", "Ctrl-C"} {
			if !strings.Contains(out, w) {
				t.Errorf("%q: help does not mention %q", args, w)
			}
		}
	}
	_, out, _ := runInProcess("--help")
	if !strings.Contains(out, "serve ") {
		t.Error("main help does not list serve")
	}
}

func TestServeBadInput(t *testing.T) {
	dir := t.TempDir()
	notProfile := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notProfile, []byte("not a profile\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := writeServeProfile(t)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no file", nil, exitUsage, "no profile given"},
		{"only options", []string{"--http", "127.0.0.1:0"}, exitUsage, "no profile given"},
		{"two files", []string{good, good}, exitUsage, "one profile at a time"},
		{"empty file name", []string{""}, exitUsage, "empty profile file name"},
		{"unknown flag", []string{"--htpp", "127.0.0.1:0", good}, exitUsage, "-htpp"},
		{"flag without value", []string{good, "--http"}, exitUsage, "option --http needs a value"},
		{"bad address", []string{"--http", "8080", good}, exitUsage, `bad --http "8080"`},
		{"bad port", []string{"--http", "127.0.0.1:99999", good}, exitUsage, "want a port number"},
		{"all interfaces", []string{"--http", ":8080", good}, exitUsage, "use --http 127.0.0.1:8080"},
		{"remote address", []string{good, "--http", "192.0.2.1:8080"}, exitUsage, "not a loopback address"},
		{"bad allow-remote", []string{"--allow-remote=maybe", good}, exitUsage, "allow-remote"},
		{"missing file", []string{"--http", "127.0.0.1:0", filepath.Join(dir, "nope.pb.gz")}, exitError, "reading profile: open "},
		{"not a profile", []string{"--http", "127.0.0.1:0", notProfile}, exitError, "notes.txt is not a pprof profile"},
		{"directory", []string{"--http", "127.0.0.1:0", dir}, exitError, "reading profile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runInProcess(append([]string{"serve"}, tc.args...)...)
			if code != tc.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.code, errOut)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q does not contain %q", errOut, tc.want)
			}
			if !strings.HasPrefix(errOut, "kmemprof serve: ") {
				t.Errorf("stderr %q does not start with the command name", errOut)
			}
			if tc.code == exitUsage && !strings.Contains(errOut, "kmemprof serve --help") {
				t.Errorf("usage error %q does not point to --help", errOut)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
		})
	}
}

// TestServeSignal runs `kmemprof serve` as a real process: it prints the
// URL, serves the flame graph, and exits 0 on SIGTERM.
func TestServeSignal(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGTERM to send on Windows")
	}
	path := writeServeProfile(t)
	cmd := exec.Command(os.Args[0], "serve", "--http", "127.0.0.1:0", path)
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(errPipe)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	want := regexp.MustCompile(`^serving ` + regexp.QuoteMeta(path) + ` at (http://127\.0\.0\.1:[0-9]+/) \(Ctrl-C to stop\)$`)
	var url string
	select {
	case line := <-lines:
		m := want.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("first stderr line %q, want %s", line, want)
		}
		url = m[1]
	case <-time.After(30 * time.Second):
		t.Fatal("no serving line within 30 s")
	}
	if code, body := httpGet(t, url+"ui/flamegraph", nil); code != http.StatusOK || !strings.Contains(body, "do_eventfd") {
		t.Fatalf("GET flamegraph: status %d, do_eventfd in body: %v", code, strings.Contains(body, "do_eventfd"))
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var rest []string
	for line := range lines {
		rest = append(rest, line)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("after SIGTERM: %v, want exit 0 (stderr %q)", err, rest)
	}
	if len(rest) != 0 {
		t.Errorf("stderr after the serving line: %q, want nothing", rest)
	}
}

// chromiumPath finds Debian's chromium. Without it the browser test skips,
// or fails when KMEMPROF_REQUIRE_BPF=1: CI installs it (apt-get install
// chromium) and must run the test.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "chromium is not installed (apt-get install chromium)"
	if runtime.GOOS != "linux" {
		t.Skipf("%s; the browser test runs on Linux", msg)
	}
	if os.Getenv(bpftest.RequireEnv) == "1" {
		t.Fatalf("%s, and %s=1 forbids skipping", msg, bpftest.RequireEnv)
	}
	t.Skip(msg)
	return ""
}

// flameBox matches a frame label the flame graph's script draws: a
// <div class="boxtext"> inside a box. The page as served holds the frame
// names only in its embedded data, never in such a div, so a match proves
// the browser ran the script and rendered the graph.
var flameBox = regexp.MustCompile(`<div class="boxtext"[^>]*>do_eventfd</div>`)

// TestBrowserFlameGraph loads the flame graph in real headless Chromium and
// checks that the DOM the page's script built shows the known kernel frame.
func TestBrowserFlameGraph(t *testing.T) {
	chromium := chromiumPath(t)
	url, stderr := startServe(t, writeServeProfile(t))
	page := url + "ui/flamegraph"

	// The raw page must not already contain what the test looks for.
	if _, body := httpGet(t, page, nil); flameBox.MatchString(body) {
		t.Fatal("the served HTML already holds a rendered box: the test would not prove the browser drew it")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update",
		"--disable-sync", "--user-data-dir="+t.TempDir(), "--window-size=1280,1024",
		"--virtual-time-budget=10000", "--dump-dom", page)
	// Chromium keeps crash reports and caches under HOME and the XDG
	// directories whatever --user-data-dir says: keep them in the test's.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HOME="+home,
		"XDG_CONFIG_HOME="+filepath.Join(home, ".config"), "XDG_CACHE_HOME="+filepath.Join(home, ".cache"))
	ownProcessGroup(cmd)
	cmd.WaitDelay = 5 * time.Second
	var out, errOut syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err := cmd.Run()
	t.Logf("chromium took %v", time.Since(start).Round(time.Millisecond))
	if ctx.Err() != nil {
		t.Fatalf("chromium did not finish within 60 s (killed); stderr:\n%s", errOut.String())
	}
	if err != nil {
		t.Fatalf("chromium: %v; stderr:\n%s", err, errOut.String())
	}
	dom := out.String()
	if !flameBox.MatchString(dom) {
		t.Fatalf("the DOM chromium rendered has no flame graph box for do_eventfd (%d bytes of DOM); chromium stderr:\n%s\nDOM:\n%.3000s", len(dom), errOut.String(), dom)
	}
	for _, fn := range []string{"alloc_empty_file", "do_syscall_64"} {
		if !regexp.MustCompile(`<div class="boxtext"[^>]*>` + fn + `</div>`).MatchString(dom) {
			t.Errorf("the rendered flame graph has no box for %s", fn)
		}
	}
	// The allocator is a label, not the tip of the flames.
	for _, fn := range []string{"__kmalloc_cache_noprof", "kmem_cache_alloc_noprof"} {
		if regexp.MustCompile(`<div class="boxtext"[^>]*>` + fn + `</div>`).MatchString(dom) {
			t.Errorf("the rendered flame graph has a box for the allocator %s", fn)
		}
	}
	if s := stderr.String(); s != "" {
		t.Errorf("server stderr %q, want nothing", s)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writes and reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestServeView: --sample-index, --tagroot and --diff-base reach pprof: the
// first view shows that sample type, the label keys as root frames, and a
// profile minus itself is empty.
func TestServeView(t *testing.T) {
	path := writeServeProfile(t)
	serve := func(view serveView) string {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		urls, done := make(chan string, 1), make(chan error, 1)
		go func() {
			done <- serveProfileView(ctx, "127.0.0.1:0", path, view, io.Discard, func(u string) { urls <- u })
		}()
		select {
		case u := <-urls:
			_, body := httpGet(t, u+"ui/top", nil)
			cancel()
			<-done
			return body
		case err := <-done:
			t.Fatalf("%+v: %v", view, err)
		case <-time.After(30 * time.Second):
			t.Fatalf("%+v: not serving after 30 s", view)
		}
		return ""
	}
	if body := serve(serveView{sampleIndex: "inuse_objects"}); !strings.Contains(body, "inuse_objects") {
		t.Errorf("--sample-index inuse_objects: the top view does not say so")
	}
	// pprof names a label's pseudo-frame after its value.
	if body := serve(serveView{tagRoot: "cache"}); !strings.Contains(body, `"Name":"filp"`) {
		t.Errorf("--tagroot cache: no frame named after the cache filp in the top view")
	}
	if body := serve(serveView{diffBase: path}); strings.Contains(body, "do_eventfd") {
		t.Errorf("--diff-base of the profile itself: do_eventfd still has a value")
	}
	err := serveProfileView(context.Background(), "127.0.0.1:0", path, serveView{sampleIndex: "cpu"}, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "inuse_space") {
		t.Errorf("--sample-index cpu: %v", err)
	}
}
