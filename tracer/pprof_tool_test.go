package tracer_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kmemprof/kmemprof/tracer"
)

// TestGoToolPprof checks that the profile reads in the tool users will open
// it with, not just in the profile package.
func TestGoToolPprof(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go tool pprof")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not on PATH")
	}
	_, p, _ := buildFixture(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "kmem.pb.gz")
	if err := tracer.WriteProfile(path, p); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		args    []string
		want    []string
		notWant []string
	}{
		{
			name: "top",
			args: []string{"-top"},
			// The flat column names the code that allocated, not the allocator.
			want:    []string{"Type: inuse_space", "ftrace_process_locs", "alloc_foo", "ringbuf_drops=3", "[stack lost: bucket collision]"},
			notWant: []string{"__alloc_pages_noprof", "__kmalloc_noprof", "kmem_cache_alloc_noprof"},
		},
		{
			name: "raw",
			args: []string{"-raw"},
			want: []string{"inuse_space/bytes[dflt]", "[kernel.kallsyms]", "cache:[kmalloc-64]"},
		},
		{
			name: "inuse objects",
			args: []string{"-sample_index=inuse_objects", "-top"},
			want: []string{"Type: inuse_objects", "Total samples = 10"},
		},
		{
			name:    "tagfocus",
			args:    []string{"-tagfocus=cache=kmalloc-64", "-top"},
			want:    []string{"alloc_foo", "[stack lost: bucket collision]"},
			notWant: []string{"ftrace_process_locs", "nft_trans_alloc_gfp"},
		},
		{
			name: "allocator label",
			args: []string{"-tags"},
			want: []string{"allocator:", "__kmalloc_noprof", "kmem_cache_alloc_noprof"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			args := append([]string{"tool", "pprof"}, tt.args...)
			cmd := exec.CommandContext(ctx, goBin, append(args, path)...)
			cmd.Dir = dir
			// Keep pprof away from the user's symbol servers and caches.
			cmd.Env = append(os.Environ(), "PPROF_TMPDIR="+dir, "PPROF_BINARY_PATH="+dir)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("go %s: %v\n%s", strings.Join(cmd.Args[1:], " "), err, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(string(out), w) {
					t.Errorf("output has %q:\n%s", w, out)
				}
			}
			if strings.Contains(string(out), "symboliz") {
				t.Errorf("pprof tried to symbolize:\n%s", out)
			}
		})
	}
}
