module github.com/kmemprof/kmemprof

go 1.26.0

require (
	github.com/cilium/ebpf v0.21.0
	github.com/google/pprof v0.0.0-20260906184651-6331bc6350fe
	golang.org/x/sys v0.49.0
	golang.org/x/term v0.47.0
)

require github.com/ianlancetaylor/demangle v0.0.0-20250417193237-f615e6bd150b // indirect

require (
	github.com/0xrawsec/golang-etw v1.6.2
	github.com/0xrawsec/golang-utils v1.3.1 // indirect
)

tool github.com/cilium/ebpf/cmd/bpf2go
