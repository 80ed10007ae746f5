package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/windows"

	"github.com/kmemprof/kmemprof/etw"
	"github.com/kmemprof/kmemprof/symbolize"
	"github.com/kmemprof/kmemprof/tracer"
)

// record traces kernel pool allocations through ETW.
func record(o *recordOptions, stdout, stderr io.Writer) error {
	if o.command != nil {
		return usagef("%v", commandUnsupported())
	}
	tags, err := loadPoolTags(o.pooltag)
	if err != nil {
		return err
	}
	drivers := symbolize.NewDriverMap()
	m := etw.NewMatcher(etw.MatcherConfig{PtrSize: 8, Tags: o.tags, RawTimestamps: true, Images: drivers, ProcessName: processName,
		SelfTag: etw.SelfTag, SelfSize: etw.SessionBufferKB * 1024, SelfMax: etw.SessionMaxBuffers(runtime.NumCPU())})

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	s, err := etw.StartSession(etw.SessionConfig{
		Matcher:      m,
		Tags:         o.tags,
		StopLeftover: o.stopLeftover,
		Notef:        func(format string, a ...any) { fmt.Fprintf(stderr, "note: "+format+"\n", a...) },
	})
	if err != nil {
		return err
	}
	defer s.Stop()
	hooks := "PoolAlloc,PoolFree,PoolAllocSession,PoolFreeSession with kernel stacks"
	fmt.Fprintf(stderr, "tracing %s via ETW (%s) for %s (Ctrl-C to stop early)\n", hooks, s.Kernel, o.duration)
	src := &etw.Source{Session: s, Matcher: m, Meta: tracer.Meta{
		Platform:   "windows",
		Kernel:     windowsVersion(),
		AttachMode: "etw " + s.Kernel,
		Hooks:      []string{hooks},
		Start:      time.Now(),
	}}
	return capturePool(ctx, o, src, nil, drivers, tags, stdout, stderr)
}

// windowsVersion returns the Windows version as major.minor.build.
func windowsVersion() string {
	maj, min, build := windowsVersionNumbers()
	return fmt.Sprintf("%d.%d.%d", maj, min, build)
}

// processName returns the image file name of a running process, or "".
func processName(pid uint32) string {
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, pid)
	if err != nil {
		if pid == 4 {
			return "System"
		}
		return ""
	}
	defer windows.CloseHandle(h)
	buf := make([]uint16, windows.MAX_PATH)
	n := uint32(len(buf))
	if err := windows.QueryFullProcessImageName(h, 0, &buf[0], &n); err != nil {
		return ""
	}
	return filepath.Base(windows.UTF16ToString(buf[:n]))
}
