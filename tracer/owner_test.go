package tracer_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/kmemprof/kmemprof/tracer"
)

// kernelText is a made-up kernel: every function named in a fixture stack
// gets 64 KiB of text, in the order they are first named.
type kernelText struct {
	base  map[string]uint64
	names map[uint64]string
}

const kernelTextStart = 0xffffffff81000000

func newKernelText() *kernelText {
	return &kernelText{base: map[string]uint64{}, names: map[uint64]string{}}
}

// addr returns the address of "function+0xoff" (an offset of at least 1,
// so that a return address looked up one byte before stays in it).
func (k *kernelText) addr(t testing.TB, frame string) uint64 {
	t.Helper()
	fn, off, ok := strings.Cut(frame, "+")
	if !ok {
		t.Fatalf("frame %q has no offset", frame)
	}
	o, err := strconv.ParseUint(off, 0, 16)
	if err != nil || o == 0 {
		t.Fatalf("frame %q: bad offset", frame)
	}
	b, ok := k.base[fn]
	if !ok {
		b = kernelTextStart + uint64(len(k.base))<<16
		k.base[fn] = b
		k.names[b] = fn
	}
	return b + o
}

// stack turns "a+0x10 < b+0x20 < ..." (leaf first, as the summary writes
// stacks) into addresses.
func (k *kernelText) stack(t testing.TB, s string) []uint64 {
	t.Helper()
	var addrs []uint64
	for _, f := range strings.Split(s, " < ") {
		addrs = append(addrs, k.addr(t, f))
	}
	return addrs
}

func (k *kernelText) Lookup(pc uint64) (tracer.Symbol, bool) {
	b := pc &^ 0xffff
	if n, ok := k.names[b]; ok {
		return tracer.Symbol{Name: n, Start: b}, true
	}
	return tracer.Symbol{}, false
}

// Stacks of a file-creation storm on ext4, of eventfds and of tmpfs files,
// as the kernel walks them (allocator first).
const (
	stExt4Inode = "kmem_cache_alloc_lru_noprof+0x10 < ext4_alloc_inode+0x20 < alloc_inode+0x30 < new_inode+0x40 < __ext4_new_inode+0x50 < ext4_create+0x60 < path_openat+0x70 < do_filp_open+0x80 < do_sys_openat2+0x90"
	stExt4LSM   = "kmem_cache_alloc_noprof+0x10 < security_inode_alloc+0x24 < inode_init_always_gfp+0x28 < alloc_inode+0x44 < new_inode+0x40 < __ext4_new_inode+0x50 < ext4_create+0x60 < path_openat+0x70 < do_filp_open+0x80 < do_sys_openat2+0x90"
	// The same blob under another call of new_inode (ext4_mkdir's).
	stExt4LSMMkdir = "kmem_cache_alloc_noprof+0x10 < security_inode_alloc+0x24 < inode_init_always_gfp+0x28 < alloc_inode+0x44 < new_inode+0x40 < __ext4_new_inode+0x50 < ext4_mkdir+0x60 < do_mkdirat+0x70"
	stDentry       = "kmem_cache_alloc_lru_noprof+0x10 < __d_alloc+0x30 < d_alloc+0x20 < lookup_open+0x40 < open_last_lookups+0x50 < path_openat+0x70 < do_filp_open+0x80 < do_sys_openat2+0x90"
	stDentryName   = "__kmalloc_noprof+0x10 < __d_alloc+0x90 < d_alloc+0x20 < lookup_open+0x40 < open_last_lookups+0x50 < path_openat+0x70 < do_filp_open+0x80 < do_sys_openat2+0x90"
	// The name of a dentry made by another lookup.
	stDentryNameOther = "__kmalloc_noprof+0x10 < __d_alloc+0x90 < d_alloc+0x20 < lookup_fast+0x40 < walk_component+0x50 < path_lookupat+0x70"
	stEventfdDentry   = "kmem_cache_alloc_lru_noprof+0x10 < __d_alloc+0x30 < d_alloc_pseudo+0x18 < alloc_file_pseudo+0x50 < __anon_inode_getfile+0x60 < anon_inode_getfile+0x20 < do_eventfd+0x70 < __x64_sys_eventfd2+0x10 < do_syscall_64+0x20"
	stEventfdCtx      = "__kmalloc_cache_noprof+0x10 < do_eventfd+0x30 < __x64_sys_eventfd2+0x10 < do_syscall_64+0x20"
	stEventfdFile     = "kmem_cache_alloc_noprof+0x10 < alloc_empty_file+0x20 < alloc_file_pseudo+0x40 < __anon_inode_getfile+0x60 < anon_inode_getfile+0x20 < do_eventfd+0x70 < __x64_sys_eventfd2+0x10 < do_syscall_64+0x20"
	stEventfdFileLSM  = "kmem_cache_alloc_noprof+0x10 < security_file_alloc+0x20 < init_file+0x30 < alloc_empty_file+0x50 < alloc_file_pseudo+0x40 < __anon_inode_getfile+0x60 < anon_inode_getfile+0x20 < do_eventfd+0x70 < __x64_sys_eventfd2+0x10 < do_syscall_64+0x20"
	stShmemInode      = "kmem_cache_alloc_lru_noprof+0x10 < shmem_alloc_inode+0x20 < alloc_inode+0x30 < new_inode+0x40 < __shmem_get_inode+0x50 < shmem_mknod+0x60 < lookup_open+0x70 < open_last_lookups+0x50 < path_openat+0x70"
	stShmemLSM        = "kmem_cache_alloc_noprof+0x10 < security_inode_alloc+0x24 < inode_init_always_gfp+0x28 < alloc_inode+0x44 < new_inode+0x40 < __shmem_get_inode+0x50 < shmem_mknod+0x60 < lookup_open+0x70 < open_last_lookups+0x50 < path_openat+0x70"
	stShmemDentry     = "kmem_cache_alloc_lru_noprof+0x10 < __d_alloc+0x30 < d_alloc+0x20 < lookup_open+0x40 < open_last_lookups+0x50 < path_openat+0x70"
	// A pipe: its inode (inode_cache, reclaimable, allocated by alloc_inode
	// itself), the inode's lsm blob, and the pipe_inode_info that
	// create_pipe_files allocates beside the inode, which the pipe's
	// release frees, not the inode's eviction.
	stPipeInode = "kmem_cache_alloc_lru_noprof+0x10 < alloc_inode+0x30 < create_pipe_files+0x20 < do_pipe2+0x40 < __x64_sys_pipe2+0x10"
	stPipeLSM   = "kmem_cache_alloc_noprof+0x10 < security_inode_alloc+0x24 < inode_init_always_gfp+0x28 < alloc_inode+0x44 < create_pipe_files+0x20 < do_pipe2+0x40 < __x64_sys_pipe2+0x10"
	stPipeInfo  = "__kmalloc_cache_noprof+0x10 < alloc_pipe_info+0x30 < create_pipe_files+0x38 < do_pipe2+0x40 < __x64_sys_pipe2+0x10"
	// Call sites only (adaptive mode): the allocator's return address into
	// its caller.
	stCallDAlloc    = "__d_alloc+0x30"
	stCallDName     = "__d_alloc+0x90"
	stCallLSM       = "security_inode_alloc+0x24"
	stCallDAllocRet = "d_alloc+0x50"
	// An unresolved constructor: its frames are not functions.
	stUnknownInode = "kmem_cache_alloc_lru_noprof+0x10 < 0xffffffff9f000010 < 0xffffffff9f000020 < new_inode+0x40 < __ext4_new_inode+0x50"
	stUnknownLSM   = "kmem_cache_alloc_noprof+0x10 < 0xffffffff9f000030 < 0xffffffff9f000040 < 0xffffffff9f000020 < new_inode+0x40 < __ext4_new_inode+0x50"
)

// ownerSample is one sample of an owner test: its cache, its stack (as
// above), whether that is a call site only, its kind (slab when 0), and
// the owner it should get.
type ownerSample struct {
	cache   string
	stack   string
	partial bool
	kind    tracer.Kind
	want    string
}

// reclaimableFixture names the reclaimable caches of the owner tests:
// shmem_inode_cache is not one.
var reclaimableFixture = map[string]bool{"ext4_inode_cache": true, "dentry": true, "sock_inode_cache": true, "inode_cache": true}

// ownerSnapshot makes a snapshot with one record per sample, each on its
// own stack (stack id = index + 1), and the symbolizer of its stacks.
func ownerSnapshot(t testing.TB, samples []ownerSample) (*tracer.Snapshot, *kernelText) {
	t.Helper()
	kt := newKernelText()
	now := time.Unix(10000, 0)
	snap := &tracer.Snapshot{
		Platform: testPlatform,
		Taken:    now,
		Stacks:   map[tracer.StackID][]uint64{},
		Partial:  map[tracer.StackID]bool{},
	}
	for i, s := range samples {
		id := tracer.StackID(i + 1)
		var addrs []uint64
		for _, f := range strings.Split(s.stack, " < ") {
			if a, err := strconv.ParseUint(f, 0, 64); err == nil {
				addrs = append(addrs, a) // no symbol
				continue
			}
			addrs = append(addrs, kt.addr(t, f))
		}
		snap.Stacks[id] = addrs
		if s.partial {
			snap.Partial[id] = true
		}
		kind := s.kind
		if kind == 0 {
			kind = tracer.KindSlab
		}
		snap.Records = append(snap.Records, tracer.Record{
			Key:        tracer.Key{Kind: kind, Stack: id, Cache: s.cache},
			BytesAlloc: 64 * uint64(len(samples)-i), BytesReq: 64, Time: now.Add(-time.Minute).UnixNano(),
		})
	}
	return snap, kt
}

// TestReclaimableOwner checks the rule that marks objects allocated under
// the same constructor call as an object of a reclaimable cache.
func TestReclaimableOwner(t *testing.T) {
	tests := []struct {
		name    string
		samples []ownerSample
	}{
		{
			name: "an ext4 inode's lsm blob",
			samples: []ownerSample{
				{cache: "ext4_inode_cache", stack: stExt4Inode},
				{cache: "lsm_inode_cache", stack: stExt4LSM, want: "ext4_inode_cache"},
				// Same constructor function, another call of it.
				{cache: "lsm_inode_cache", stack: stExt4LSMMkdir},
			},
		},
		{
			name: "a dentry's external name",
			samples: []ownerSample{
				{cache: "dentry", stack: stDentry},
				{cache: "kmalloc-96", stack: stDentryName, want: "dentry"},
				{cache: "kmalloc-96", stack: stDentryNameOther},
			},
		},
		{
			name: "an eventfd shares only do_eventfd with its dentry",
			samples: []ownerSample{
				{cache: "dentry", stack: stEventfdDentry},
				{cache: "kmalloc-64", stack: stEventfdCtx},
				{cache: "filp", stack: stEventfdFile},
				{cache: "lsm_file_cache", stack: stEventfdFileLSM},
			},
		},
		{
			name: "a pipe's inode owns its lsm blob, not its pipe_inode_info",
			samples: []ownerSample{
				{cache: "inode_cache", stack: stPipeInode},
				{cache: "lsm_inode_cache", stack: stPipeLSM, want: "inode_cache"},
				// create_pipe_files is the inode's r1, but no constructor.
				{cache: "kmalloc-cg-1k", stack: stPipeInfo},
			},
		},
		{
			name: "shmem inodes are not reclaimable",
			samples: []ownerSample{
				{cache: "shmem_inode_cache", stack: stShmemInode},
				{cache: "lsm_inode_cache", stack: stShmemLSM},
				{cache: "dentry", stack: stShmemDentry},
			},
		},
		{
			name: "call sites only",
			samples: []ownerSample{
				{cache: "dentry", stack: stDentry},
				{cache: "kmalloc-96", stack: stCallDName, partial: true, want: "dentry"},
				// The call site of the dentry's caller (r1) is not enough
				// without the frames above it.
				{cache: "kmalloc-64", stack: stCallDAllocRet, partial: true},
				{cache: "lsm_inode_cache", stack: stCallLSM, partial: true},
			},
		},
		{
			name: "a reclaimable call site only",
			samples: []ownerSample{
				{cache: "dentry", stack: stCallDAlloc, partial: true},
				{cache: "kmalloc-96", stack: stCallDName, partial: true, want: "dentry"},
				// Its frames above the call site are not known.
				{cache: "kmalloc-96", stack: stDentryName},
			},
		},
		{
			name: "reclaimable and non-slab samples are not owned",
			samples: []ownerSample{
				{cache: "dentry", stack: stDentry},
				{cache: "kmalloc-rcl-96", stack: stDentryName},
				{cache: "", stack: stDentryName, kind: tracer.KindPage},
				{cache: "kmalloc-96", stack: stDentryName, want: "dentry"},
			},
		},
		{
			name: "unresolved constructors prove nothing",
			samples: []ownerSample{
				{cache: "ext4_inode_cache", stack: stUnknownInode},
				{cache: "lsm_inode_cache", stack: stUnknownLSM},
			},
		},
		{
			name: "no reclaimable sample",
			samples: []ownerSample{
				{cache: "shmem_inode_cache", stack: stShmemInode},
				{cache: "lsm_inode_cache", stack: stShmemLSM},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap, kt := ownerSnapshot(t, tt.samples)
			agg, err := tracer.Aggregate(snap, kt, tracer.Options{Reclaimable: reclaimableFixture})
			if err != nil {
				t.Fatal(err)
			}
			if len(agg.Samples) != len(tt.samples) {
				t.Fatalf("%d samples, want %d", len(agg.Samples), len(tt.samples))
			}
			for _, s := range agg.Samples {
				want := tt.samples[s.Stack-1]
				if s.ReclaimableOwner != want.want {
					t.Errorf("%s at %s: owner %q, want %q", want.cache, want.stack, s.ReclaimableOwner, want.want)
				}
				if s.Reclaimed() != (s.Reclaimable || want.want != "") {
					t.Errorf("%s at %s: Reclaimed() = %v", want.cache, want.stack, s.Reclaimed())
				}
			}
		})
	}
}

// stormSnapshot is issue 21's file-creation storm in small: ext4 inodes
// and their lsm blobs grow, the blobs more than a steady eventfd leak, and
// dentries grow most.
func stormSnapshot(t testing.TB) (*tracer.Snapshot, *kernelText, map[tracer.StackID]tracer.GrowthFigure) {
	t.Helper()
	snap, kt := ownerSnapshot(t, []ownerSample{
		{cache: "dentry", stack: stDentry},                       // 1
		{cache: "ext4_inode_cache", stack: stExt4Inode},          // 2
		{cache: "lsm_inode_cache", stack: stExt4LSM},             // 3
		{cache: "kmalloc-64", stack: stEventfdCtx},               // 4: the leak
		{cache: "kmalloc-96", stack: stCallDName, partial: true}, // 5
	})
	const kib = 1024
	growth := map[tracer.StackID]tracer.GrowthFigure{
		1: {Objects: 8000, Bytes: 1500 * kib, Steadiness: 0.5},
		2: {Objects: 4000, Bytes: 4000 * kib, Steadiness: 0.5},
		3: {Objects: 4000, Bytes: 930 * kib, Steadiness: 0.5},
		4: {Objects: 11456, Bytes: 716 * kib, Steadiness: 1},
		5: {Objects: 1000, Bytes: 94 * kib, Steadiness: 0.5},
	}
	return snap, kt, growth
}

// TestOwnedGrowthRanking: the summary ranks a steady leak above an owned
// lsm_inode_cache row that grew more, and still shows that row's growth.
func TestOwnedGrowthRanking(t *testing.T) {
	snap, kt, growth := stormSnapshot(t)
	agg, err := tracer.Aggregate(snap, kt, tracer.Options{Reclaimable: reclaimableFixture, Growth: growth})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := agg.WriteSummary(&buf, 10); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	lines := strings.Split(out, "\n")
	if len(lines) < 6 {
		t.Fatalf("summary:\n%s", out)
	}
	if !strings.Contains(lines[1], "kmalloc-64 ") || !strings.Contains(lines[1], "do_eventfd") {
		t.Errorf("top row is not the steady leak:\n%s", out)
	}
	var lsm string
	for _, l := range lines[2:6] {
		if strings.Contains(l, "lsm_inode_cache") {
			lsm = l
		}
	}
	for _, want := range []string{"930.0 KiB", "50%", "lsm_inode_cache (freed with ext4_inode_cache)", "security_inode_alloc < inode_init_always_gfp < alloc_inode"} {
		if !strings.Contains(lsm, want) {
			t.Errorf("lsm_inode_cache row %q lacks %q:\n%s", lsm, want, out)
		}
	}
	if !strings.Contains(out, "kmalloc-96 (freed with dentry)") {
		t.Errorf("the dentry name's row is not marked:\n%s", out)
	}
	checkGolden(t, "owner.summary.txt", buf.Bytes())
}

// TestOwnedGrowthProfile: growth_objects and growth_space count only
// unreclaimable growth; owned samples carry the reclaimable_owner label.
func TestOwnedGrowthProfile(t *testing.T) {
	snap, kt, growth := stormSnapshot(t)
	agg, err := tracer.Aggregate(snap, kt, tracer.Options{Reclaimable: reclaimableFixture, Growth: growth})
	if err != nil {
		t.Fatal(err)
	}
	p, err := agg.Profile()
	if err != nil {
		t.Fatal(err)
	}
	var enc bytes.Buffer
	if err := tracer.EncodeProfile(&enc, p); err != nil {
		t.Fatal(err)
	}
	back, err := profile.Parse(bytes.NewReader(enc.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	idx := map[string]int{}
	for i, st := range back.SampleType {
		idx[st.Type] = i
	}
	gObj, okObj := idx["growth_objects"]
	gSpace, okSpace := idx["growth_space"]
	if !okObj || !okSpace {
		t.Fatalf("sample types %v", back.SampleType)
	}
	wantOwner := map[string]string{"lsm_inode_cache": "ext4_inode_cache", "kmalloc-96": "dentry"}
	for _, s := range back.Sample {
		cache := s.Label[tracer.LabelCache][0]
		owner := strings.Join(s.Label[tracer.LabelOwner], ",")
		if owner != wantOwner[cache] {
			t.Errorf("%s: %s=%q, want %q", cache, tracer.LabelOwner, owner, wantOwner[cache])
		}
		reclaimed := owner != "" || len(s.Label[tracer.LabelReclaim]) > 0
		switch {
		case reclaimed && (s.Value[gObj] != 0 || s.Value[gSpace] != 0):
			t.Errorf("%s (reclaimable or owned): growth %d objects, %d bytes, want 0", cache, s.Value[gObj], s.Value[gSpace])
		case !reclaimed && (s.Value[gObj] != 11456 || s.Value[gSpace] != 716*1024):
			t.Errorf("%s: growth %d objects, %d bytes, want the leak's 11456, 716 KiB", cache, s.Value[gObj], s.Value[gSpace])
		}
	}

	if testing.Short() {
		return
	}
	// What users run: the leak on top.
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not on PATH")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "kmem.pb.gz")
	if err := tracer.WriteProfile(path, p); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "tool", "pprof", "-sample_index=growth_space", "-top", path)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PPROF_TMPDIR="+dir, "PPROF_BINARY_PATH="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go tool pprof: %v\n%s", err, out)
	}
	t.Logf("go tool pprof -sample_index=growth_space -top:\n%s", out)
	var first string
	for l := range strings.SplitSeq(string(out), "\n") {
		if f := strings.Fields(l); len(f) == 6 && strings.HasSuffix(f[1], "%") && f[0] != "flat" {
			first = f[5]
			break
		}
	}
	if first != "do_eventfd" && first != "__kmalloc_cache_noprof" {
		t.Errorf("go tool pprof -sample_index=growth_space -top: first %q, want the leak's frames:\n%s", first, out)
	}
	if strings.Contains(string(out), "security_inode_alloc") || strings.Contains(string(out), "__d_alloc") {
		t.Errorf("reclaimable or owned frames hold growth_space:\n%s", out)
	}
}
