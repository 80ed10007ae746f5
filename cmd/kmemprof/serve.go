package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"

	"github.com/google/pprof/driver"
	"github.com/google/pprof/profile"
)

const serveUsage = `Usage: kmemprof serve [options] FILE

Open a saved profile (FILE, e.g. kmem.pb.gz from 'kmemprof record') in the
pprof web UI: the flame graph, the top table and the peek view (callers and
callees of a function), with the sample type (inuse_space, inuse_objects,
alloc_*), focus, ignore and tag filters in the menus. It is the same UI as
'go tool pprof -http', built into kmemprof, so no Go toolchain is needed on
the machine. The UI's Graph view needs Graphviz's dot on the machine
(apt-get install graphviz); its Source and Disassemble views need the kernel's
sources and debug info, which a profile does not carry: they show nothing
useful for kernel stacks.

kmemprof prints "serving FILE at http://127.0.0.1:PORT/ (Ctrl-C to stop)" on
stderr and serves until Ctrl-C (SIGINT) or SIGTERM. It never starts a browser:
open the URL yourself. 'kmemprof record --http ADDR' serves the profile it has
just written the same way.

Options:
      --http ADDR      address to listen on (default 127.0.0.1:8080); port 0
                       picks a free port. Only loopback addresses (127.0.0.1,
                       [::1], localhost) unless --allow-remote
      --allow-remote   allow an ADDR other machines can reach, such as
                       :8080 (every interface) or 10.0.0.5:8080
      --sample-index T the sample type shown first: inuse_space (default),
                       inuse_objects, alloc_space, alloc_objects, and with
                       record --interval growth_space, growth_objects
      --tagroot KEYS   label keys shown as the flame graph's root frames,
                       comma-separated: cache, kind, comm, memcg...
      --diff-base OLD  show FILE minus OLD: which call paths left more (or
                       less) behind in FILE's capture window than in OLD's;
                       a capture holds only its own window's allocations
  -h, --help           show this help

A profile holds kernel addresses (the KASLR offset, where kernel objects
live), so the UI stays on this machine by default. To look at a server's
profile from your desk, keep the loopback default and tunnel:
  ssh -L 8080:127.0.0.1:8080 server   then open http://127.0.0.1:8080/
or copy the file and run 'kmemprof serve' (or 'go tool pprof -http') locally.
pprof keeps saved views in its settings file under $XDG_CONFIG_HOME or $HOME
(%AppData% on Windows).

Examples:
  kmemprof serve kmem.pb.gz
  kmemprof serve --tagroot cache kmem.pb.gz         slab caches at the root
  kmemprof serve --diff-base before.pb.gz after.pb.gz
  kmemprof serve --http 127.0.0.1:0 kmem.pb.gz      any free port
  kmemprof serve --http :8080 --allow-remote kmem.pb.gz
`

// defaultHTTPAddr is where `kmemprof serve` listens without --http.
const defaultHTTPAddr = "127.0.0.1:8080"

// serveOptions is a parsed `kmemprof serve` command line.
type serveOptions struct {
	addr string // checked by checkHTTPAddr
	path string // the profile
	view serveView
}

// parseServe parses the serve command line. Bad input is a usageError;
// --help returns flag.ErrHelp after printing the usage to stdout.
func parseServe(args []string, stdout io.Writer) (*serveOptions, error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported by the caller, usage by -h
	var (
		o           serveOptions
		allowRemote bool
		help        bool
	)
	fs.StringVar(&o.addr, "http", defaultHTTPAddr, "")
	fs.BoolVar(&allowRemote, "allow-remote", false, "")
	fs.StringVar(&o.view.sampleIndex, "sample-index", "", "")
	fs.StringVar(&o.view.tagRoot, "tagroot", "", "")
	fs.StringVar(&o.view.diffBase, "diff-base", "", "")
	fs.BoolVar(&help, "help", false, "")
	fs.BoolVar(&help, "h", false, "")

	files, err := parseInterspersed(fs, args)
	if err != nil {
		return nil, err
	}
	if help {
		fmt.Fprint(stdout, serveUsage)
		return nil, flag.ErrHelp
	}
	if o.path, err = oneProfile(files, "kmemprof serve [--http ADDR] FILE", "; --diff-base OLD NEW compares two"); err != nil {
		return nil, err
	}
	if err := checkHTTPAddr(o.addr, allowRemote); err != nil {
		return nil, err
	}
	return &o, nil
}

// oneProfile is the one profile file a command (synopsis) takes, or a
// usageError; more says how to use two.
func oneProfile(files []string, synopsis, more string) (string, error) {
	switch {
	case len(files) == 0:
		return "", usagef("no profile given: %s (e.g. kmem.pb.gz)", synopsis)
	case len(files) > 1:
		return "", usagef("one profile at a time: got %d files (%s)%s", len(files), strings.Join(files, ", "), more)
	case files[0] == "":
		return "", usagef("empty profile file name")
	}
	return files[0], nil
}

// checkHTTPAddr checks the --http address of the pprof web UI: HOST:PORT
// with a numeric port (0 for any free one). Unless allowRemote is set, HOST
// must be a loopback address or "localhost": the UI shows the profile,
// kernel addresses included, to whoever can connect, so an empty host (every
// interface), an unspecified address or any other name or address is refused.
// Every error is a usageError that names the fix.
func checkHTTPAddr(addr string, allowRemote bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return usagef("bad --http %q: want HOST:PORT such as 127.0.0.1:8080", addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return usagef("bad --http %q: want a port number from 0 to 65535 (0 picks a free port), such as 127.0.0.1:8080", addr)
	}
	if allowRemote {
		return nil
	}
	const why = "the web UI shows the profile, kernel addresses included, to anyone who can connect"
	if host == "" {
		return usagef("--http %s listens on every network interface: %s; use --http 127.0.0.1:%s to keep it on this machine, or add --allow-remote", addr, why, port)
	}
	if ip := net.ParseIP(host); ip != nil {
		switch {
		case ip.IsLoopback():
			return nil
		case ip.IsUnspecified():
			return usagef("--http %s listens on every network interface: %s; use --http 127.0.0.1:%s to keep it on this machine, or add --allow-remote", addr, why, port)
		}
	} else if strings.EqualFold(host, "localhost") {
		return nil
	}
	return usagef("--http %s is not a loopback address: %s; use --http 127.0.0.1:%s (and an SSH tunnel from other machines), or add --allow-remote", addr, why, port)
}

func runServe(args []string, stdout, stderr io.Writer) int {
	o, err := parseServe(args, stdout)
	if err != nil {
		return report(stderr, "serve", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// Once the first signal has asked for a clean stop, a second one
		// kills the process as usual.
		<-ctx.Done()
		stop()
	}()
	err = serveProfileView(ctx, o.addr, o.path, o.view, stderr, func(url string) {
		fmt.Fprintf(stderr, "serving %s at %s (Ctrl-C to stop)\n", o.path, url)
	})
	if err != nil {
		return report(stderr, "serve", err)
	}
	return exitOK
}

// serveProfile serves the profile in the file path with the pprof web UI on
// addr until ctx is cancelled, then shuts the server down and returns nil.
// Once it listens it calls ready (if not nil) with the UI's URL,
// "http://HOST:PORT/" with the port actually bound (addr may have port 0);
// when ctx is done before that, it returns nil without calling ready, so
// pass a context that a signal which ended a capture has not cancelled.
// It never opens a browser. It does not apply the loopback policy: callers
// check addr with checkHTTPAddr first. When the bound address is a loopback
// one, requests must come from loopback and name a loopback host (a guard
// against DNS rebinding). Messages of the pprof driver (such as a bad filter
// typed in the UI) go to stderr. It returns an error when the file cannot be
// read or is not a profile, when addr cannot be listened on, when pprof
// cannot start its UI (it needs a settings directory: $XDG_CONFIG_HOME or
// $HOME, %AppData% on Windows) or when the server fails.
func serveProfile(ctx context.Context, addr, path string, stderr io.Writer, ready func(url string)) error {
	return serveProfileView(ctx, addr, path, serveView{}, stderr, ready)
}

// serveView is how the UI first shows the profile: pprof's -sample_index,
// -tagroot and -diff_base.
type serveView struct {
	sampleIndex string // e.g. inuse_objects, growth_space
	tagRoot     string // label keys, comma-separated, as pseudo-frames at the root
	diffBase    string // a profile to subtract
}

// serveProfileView is serveProfile with a first view.
func serveProfileView(ctx context.Context, addr, path string, view serveView, stderr io.Writer, ready func(url string)) error {
	p, err := loadProfile(path)
	if err != nil {
		return err
	}
	fetch := profileFetcher{p: p}
	if view.diffBase != "" {
		base, err := loadProfile(view.diffBase)
		if err != nil {
			return err
		}
		fetch.base, fetch.basePath = base, view.diffBase
	}
	if view.sampleIndex != "" && !hasSampleType(p, view.sampleIndex) {
		return usagef("--sample-index %s: %s has the sample types %s", view.sampleIndex, path, sampleTypeNames(p))
	}
	if ctx.Err() != nil {
		return nil // stopped before it started
	}
	if _, err := os.UserConfigDir(); err != nil {
		return fmt.Errorf("starting the pprof web UI: %w; set one (pprof keeps its saved views there)", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening for the web UI: %w (choose another address or port with --http)", err)
	}
	defer ln.Close() // in case the driver fails before serving
	out := &lockedWriter{w: stderr}
	web := &webServer{ctx: ctx, ln: ln, ready: ready, errorLog: log.New(out, "web UI: ", 0)}
	flags := &driverFlags{
		args: []string{path},
		set: map[string]string{
			"http":       ln.Addr().String(),
			"no_browser": "true",
		},
	}
	if view.sampleIndex != "" {
		flags.set["sample_index"] = view.sampleIndex
	}
	if view.tagRoot != "" {
		flags.set["tagroot"] = view.tagRoot
	}
	if view.diffBase != "" {
		flags.set["diff_base"] = view.diffBase
	}
	err = driver.PProf(&driver.Options{
		Flagset:    flags,
		Fetch:      fetch,
		Sym:        noSymbolizer{},
		Obj:        noObjTool{},
		UI:         &quietUI{w: out},
		HTTPServer: web.serve,
	})
	switch {
	case flags.err != nil:
		return flags.err
	case err != nil:
		return fmt.Errorf("pprof web UI: %w", err)
	case !web.served:
		return errors.New("pprof web UI: the pprof driver returned without serving")
	}
	return nil
}

// loadProfile reads and parses a profile file (gzipped or not), so that a
// wrong file is reported before anything listens.
func loadProfile(path string) (*profile.Profile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading profile: %w", err)
	}
	p, err := profile.ParseData(b)
	if err != nil {
		return nil, fmt.Errorf("%s is not a pprof profile (%v); 'kmemprof record -o FILE' writes one", path, err)
	}
	if err := p.CheckValid(); err != nil {
		return nil, fmt.Errorf("%s is not a valid pprof profile: %w", path, err)
	}
	return p, nil
}

// webServer is the driver's HTTPServer: it serves pprof's handlers on a
// listener made beforehand, so that the bound port is known and nothing
// else binds, and stops when ctx is done.
type webServer struct {
	ctx      context.Context
	ln       net.Listener
	ready    func(url string)
	errorLog *log.Logger
	served   bool
}

// shutdownGrace is how long requests in flight may finish after the stop.
const shutdownGrace = 5 * time.Second

func (s *webServer) serve(args *driver.HTTPServerArgs) error {
	s.served = true
	// Like 'go tool pprof -http', the UI lives under /ui/ and / redirects
	// there; pprof's own links are relative, so they stay under /ui/.
	ui := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := args.Handlers[r.URL.Path]
		if h == nil {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
	mux := http.NewServeMux()
	mux.Handle("/ui/", http.StripPrefix("/ui", ui))
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		u := *r.URL
		u.Path = "/ui/"
		http.Redirect(w, r, u.String(), http.StatusTemporaryRedirect)
	})
	var h http.Handler = mux
	if tcp, ok := s.ln.Addr().(*net.TCPAddr); ok && tcp.IP.IsLoopback() {
		h = loopbackOnly(mux)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          s.errorLog,
	}

	stopped := make(chan struct{})
	done := make(chan struct{})
	defer close(done)
	go func() {
		defer close(stopped)
		select {
		case <-s.ctx.Done():
		case <-done:
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
	}()

	if s.ready != nil {
		s.ready(uiURL(s.ln.Addr()))
	}
	err := srv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		<-stopped // let the requests in flight finish
		return nil
	}
	return fmt.Errorf("serving the web UI: %w", err)
}

// uiURL is the URL of the UI listening on a: "http://HOST:PORT/". A
// listener on every interface is named by 127.0.0.1, which reaches it from
// this machine (Go listens dual-stack there).
func uiURL(a net.Addr) string {
	if tcp, ok := a.(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
		return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(tcp.Port)) + "/"
	}
	return "http://" + a.String() + "/"
}

// loopbackOnly refuses requests from other machines and requests whose Host
// is not a loopback address or localhost: a web page whose name has been
// rebound to 127.0.0.1 must not read the profile.
func loopbackOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		client, _, err := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(client); err != nil || ip == nil || !ip.IsLoopback() {
			http.Error(w, "kmemprof serve: only this machine may connect", http.StatusForbidden)
			return
		}
		if !isLoopbackHost(r.Host) {
			http.Error(w, "kmemprof serve: the web UI answers only to a loopback address or localhost in the Host header", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// isLoopbackHost reports whether the Host header hostport names this
// machine: localhost or a loopback IP address, with or without a port.
func isLoopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// driverFlags is the pprof driver's FlagSet: instead of parsing a command
// line it answers the flags in set and the defaults for all others, and
// gives args as the profile sources.
type driverFlags struct {
	args     []string
	set      map[string]string // flag name (no dash) -> value
	declared map[string]bool
	err      error // a flag in set that the driver does not declare, or a bad value
}

func (f *driverFlags) value(name string) (string, bool) {
	if f.declared == nil {
		f.declared = make(map[string]bool)
	}
	f.declared[name] = true
	v, ok := f.set[name]
	return v, ok
}

func (f *driverFlags) fail(err error) {
	if f.err == nil {
		f.err = err
	}
}

func (f *driverFlags) Bool(name string, def bool, usage string) *bool {
	if v, ok := f.value(name); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			f.fail(fmt.Errorf("pprof flag -%s: %w", name, err))
		}
		def = b
	}
	return &def
}

func (f *driverFlags) Int(name string, def int, usage string) *int {
	if v, ok := f.value(name); ok {
		i, err := strconv.Atoi(v)
		if err != nil {
			f.fail(fmt.Errorf("pprof flag -%s: %w", name, err))
		}
		def = i
	}
	return &def
}

func (f *driverFlags) Float64(name string, def float64, usage string) *float64 {
	if v, ok := f.value(name); ok {
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			f.fail(fmt.Errorf("pprof flag -%s: %w", name, err))
		}
		def = x
	}
	return &def
}

func (f *driverFlags) String(name, def, usage string) *string {
	if v, ok := f.value(name); ok {
		def = v
	}
	return &def
}

func (f *driverFlags) StringList(name, def, usage string) *[]*string {
	s := f.String(name, def, usage)
	return &[]*string{s}
}

func (f *driverFlags) ExtraUsage() string    { return "" }
func (f *driverFlags) AddExtraUsage(string)  {}
func (f *driverFlags) Parse(func()) []string { return f.parse() }

// parse checks that the driver declared every flag in set: a pprof version
// without -no_browser must fail here rather than open a browser. On failure
// it returns no sources, which stops the driver.
func (f *driverFlags) parse() []string {
	for name := range f.set {
		if !f.declared[name] {
			f.fail(fmt.Errorf("this pprof version has no -%s flag: kmemprof needs one built with it", name))
		}
	}
	if f.err != nil {
		return nil
	}
	return f.args
}

// profileFetcher hands the driver the profile already read, so that the
// source name is never taken for a URL. The empty source it returns marks
// the profile as local: pprof saves no copy of it.
type profileFetcher struct {
	p        *profile.Profile
	base     *profile.Profile // --diff-base's, fetched by its path
	basePath string
}

func (f profileFetcher) Fetch(src string, _, _ time.Duration) (*profile.Profile, string, error) {
	if f.base != nil && src == f.basePath {
		// pprof changes a profile it fetches (a diff base's values are
		// negated): hand it a copy each time.
		return f.base.Copy(), "", nil
	}
	return f.p, "", nil
}

func hasSampleType(p *profile.Profile, name string) bool {
	for _, st := range p.SampleType {
		if st.Type == name {
			return true
		}
	}
	return false
}

func sampleTypeNames(p *profile.Profile) string {
	var ns []string
	for _, st := range p.SampleType {
		ns = append(ns, st.Type)
	}
	return strings.Join(ns, ", ")
}

// noSymbolizer leaves the profile as it is: kmemprof profiles carry their
// kernel function names, and there is no kernel binary to look them up in.
type noSymbolizer struct{}

func (noSymbolizer) Symbolize(string, driver.MappingSources, *profile.Profile) error { return nil }

// noObjTool opens no object files, so that pprof never runs objdump or nm
// on local files named by the profile (the disassembly view says so).
type noObjTool struct{}

var errNoObjects = errors.New("kmemprof serve opens no object files: kernel profiles are symbolized when recorded")

func (noObjTool) Open(string, uint64, uint64, uint64, string) (driver.ObjFile, error) {
	return nil, errNoObjects
}

func (noObjTool) Disasm(string, uint64, uint64, bool) ([]driver.Inst, error) {
	return nil, errNoObjects
}

// quietUI is the driver's UI: never interactive, never a browser; pprof's
// progress messages are dropped and its error messages go to w.
type quietUI struct{ w io.Writer }

func (*quietUI) ReadLine(string) (string, error) { return "", io.EOF }
func (*quietUI) Print(...any)                    {}
func (ui *quietUI) PrintErr(args ...any) {
	msg := strings.TrimSuffix(fmt.Sprint(args...), "\n")
	// Messages may quote text typed into the web UI: no terminal escapes.
	msg = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) && r != '\n' && r != '\t' {
			return -1
		}
		return r
	}, msg)
	fmt.Fprintf(ui.w, "pprof: %s\n", msg)
}
func (*quietUI) IsTerminal() bool                    { return false }
func (*quietUI) WantBrowser() bool                   { return false }
func (*quietUI) SetAutoComplete(func(string) string) {}

// lockedWriter serializes writes from the HTTP handlers.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
