package bpf

// The BPF object is generated from kmemprof.bpf.c by bpf2go (pinned as a tool
// in go.mod) and committed, so building kmemprof needs no clang. Run
// `make generate` after changing the C code; CI fails when the committed files
// are stale.
//
//go:generate go tool bpf2go -tags linux -cc clang -cflags "-O2 -g -Wall -Werror -mcpu=v3" -target amd64,arm64 -type alloc_info -type cache_info -type totals_key -type totals_val -type cache_stat -type stack_buf -type cgroup_name_key -type cgroup_name kmemprof kmemprof.bpf.c -- -I./headers
