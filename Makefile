# kmemprof: build, capture, test.
#   make build      build ./kmemprof, static (no clang needed: the BPF object is committed)
#   make run        build, then a real 10 s capture to kmem.pb.gz and its top stacks (root)
#   make test       every test; the kernel tests load real BPF programs (root)
#   make generate   rebuild the BPF object from bpf/kmemprof.bpf.c and bpf/c/ (needs clang, llvm-strip)
#   make bench      Go benchmarks, then the overhead harness: kmemprof's modes beside
#                   bpftrace and BCC memleak on the same workload (root, several minutes)
#   make release    static binaries for linux/amd64, linux/arm64 and windows/amd64,
#                   packed with README, LICENSE and NOTICE into dist/ (tar.gz, zip,
#                   .deb), SHA256SUMS; every archive is read back and checked
#   make test-kernels  the selftests and kernel tests inside Debian's own kernels
#                   (5.10, 6.1, 6.12, sid, arm64) under qemu, a table kernel x check
#                   (root, downloads the kernels, about 30 minutes); KERNELS="6.12 sid"
#                   picks some; see .ci/kernels/README.md

GO      ?= go
BIN     ?= kmemprof
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
DURATION ?= 10s

.PHONY: build run test generate bench bench-go bench-overhead tracefs vet cross check-format format-bpf check-generated fuzz test-kernels release image

build:
	CGO_ENABLED=0 $(GO) build -ldflags "-X main.version=$(VERSION) -X main.commit=$(COMMIT)" -o $(BIN) ./cmd/kmemprof

# tracefs is needed by --attach tracepoint; raw_tp and tp_btf work without it.
tracefs:
	@if [ "$$(id -u)" = 0 ] && [ ! -d /sys/kernel/tracing/events/kmem ]; then \
		mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing || true; \
	fi

run: build tracefs
	./$(BIN) record -d $(DURATION) -o kmem.pb.gz
	$(GO) tool pprof -top -nodecount=15 kmem.pb.gz

# Packages run in parallel. Kernel tests trace the whole machine, so they
# take a lock (bpftest.Require) that runs one of them at a time across the
# packages; the others run alongside. KMEMPROF_REQUIRE_BPF=1 turns their
# skips into failures.
test: tracefs
	$(GO) test -count=1 -timeout 20m ./...

generate:
	$(GO) generate ./bpf/

# Every fuzz target (decoders and parsers of untrusted input) for FUZZTIME
# each. A count (Nx), not a duration: Go 1.26's fuzz coordinator can report a
# spurious "context deadline exceeded" when a duration ends (go.dev/issue/75804).
FUZZTIME ?= 300000x
fuzz:
	@for pkg in ./etw ./etw/etl ./symbolize; do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$f"; \
			$(GO) test $$pkg -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) || exit 1; \
		done; \
	done

# The BPF C's style (bpf/.clang-format); format-bpf applies it. The C is
# bpf/kmemprof.bpf.c, the parts it includes (bpf/c/*.h) and kmemprof.h.
BPF_C = bpf/kmemprof.bpf.c bpf/kmemprof.h $(sort $(wildcard bpf/c/*.h))
check-format:
	clang-format --dry-run --Werror $(BPF_C)
format-bpf:
	clang-format -i $(BPF_C)

check-generated: generate
	@git diff --exit-code --stat -- bpf/ || { echo "generated BPF files are stale: run 'make generate' and commit"; exit 1; }

vet:
	$(GO) vet ./...
	GOOS=windows GOARCH=amd64 $(GO) vet ./...
	GOARCH=arm64 $(GO) vet ./...

cross:
	GOOS=windows GOARCH=amd64 $(GO) build ./...
	CGO_ENABLED=0 GOARCH=arm64 $(GO) build ./...

# Release archives in $(DIST). The Windows build links golang-etw (GPL-3.0,
# see NOTICE): its zip carries the GPL text from the module.
DIST ?= dist
RELEASE_LDFLAGS = -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
release:
	rm -rf $(DIST)
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags "$(RELEASE_LDFLAGS)" -o $(DIST)/linux-amd64/kmemprof ./cmd/kmemprof
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags "$(RELEASE_LDFLAGS)" -o $(DIST)/linux-arm64/kmemprof ./cmd/kmemprof
	CGO_ENABLED=0 GOOS=windows GOARCH=amd64 $(GO) build -trimpath -ldflags "$(RELEASE_LDFLAGS)" -o $(DIST)/windows-amd64/kmemprof.exe ./cmd/kmemprof
	mkdir -p $(DIST)/docs
	$(GO) run -ldflags "-X main.version=$(VERSION)" ./cmd/kmemprof man > $(DIST)/docs/kmemprof.8
	$(GO) run ./cmd/kmemprof completion bash > $(DIST)/docs/kmemprof.bash
	$(GO) run ./cmd/kmemprof completion zsh > $(DIST)/docs/_kmemprof
	GOOS=windows $(GO) mod download github.com/0xrawsec/golang-etw
	$(GO) run ./cmd/mkrelease -version $(VERSION) -dist $(DIST) \
		-gpl "$$(GOOS=windows $(GO) list -m -f '{{.Dir}}' github.com/0xrawsec/golang-etw)/LICENSE"

# The container image, without a container daemon: an OCI archive holding
# an index of linux/amd64 and linux/arm64 images, each the static binary
# alone (entrypoint /kmemprof). Push it with
#   skopeo copy oci-archive:$(DIST)/kmemprof-$(VERSION)-image.oci.tar docker://REGISTRY/kmemprof:$(VERSION)
# or load it with podman load -i. Reproducible (SOURCE_DATE_EPOCH, default 0).
image:
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags "$(RELEASE_LDFLAGS)" -o $(DIST)/linux-amd64/kmemprof ./cmd/kmemprof
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags "$(RELEASE_LDFLAGS)" -o $(DIST)/linux-arm64/kmemprof ./cmd/kmemprof
	$(GO) run ./cmd/mkimage -version $(VERSION) -o $(DIST)/kmemprof-$(VERSION)-image.oci.tar \
		linux/amd64=$(DIST)/linux-amd64/kmemprof linux/arm64=$(DIST)/linux-arm64/kmemprof
	@echo "image: $(DIST)/kmemprof-$(VERSION)-image.oci.tar (layout: $(DIST)/kmemprof-$(VERSION)-image.oci)"

bench: bench-go bench-overhead

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./tracer/ ./symbolize/ ./bpf/ ./cmd/kmemprof/

# ../shared/bench holds the workloads and the harness that times them
# untraced and under each tracer, interleaved, as ratios (see its README).
BENCH_DIR    ?= ../shared/bench
BENCH_ROUNDS ?= 5
BENCH_ITERS  ?= 500000
BENCH_WORKLOAD ?= openclose
KMEMPROF_CMD = $(CURDIR)/$(BIN) record -d 1h -o out.pb.gz --top 0
# The floors: empty programs on the slab tracepoints (the kernel's dispatch),
# with the second program per free hook the default mode attaches, and with
# allocation programs that only walk the stack (cmd/kmemprof-floor).
FLOOR_CMD = $(CURDIR)/bin/kmemprof-floor
bench-overhead: build tracefs
	mkdir -p bin/bench
	CGO_ENABLED=0 $(GO) build -o bin/kmemprof-floor ./cmd/kmemprof-floor
	cd $(BENCH_DIR) && export BENCH_BIN=$(CURDIR)/bin/bench && ./setup.sh --no-verify >&2 && ./overhead.sh -r $(BENCH_ROUNDS) -n $(BENCH_ITERS) \
		-w $(BENCH_WORKLOAD) -t rawtp-count,bpftrace-leak,memleak \
		'floor::$(FLOOR_CMD)' \
		'floor-backups::$(FLOOR_CMD) --backups' \
		'floor-walk::$(FLOOR_CMD) --backups --walk' \
		'kmemprof-full::$(KMEMPROF_CMD) --mode full' \
		'kmemprof-adaptive::$(KMEMPROF_CMD)' \
		'kmemprof-sample64::$(KMEMPROF_CMD) --sample 64'

# Fetches the newest kernel of each (cached in /var/cache/kmemprof-kernels),
# builds the binaries for each arch, boots each under qemu (software
# emulation) and runs .ci/kernels/guest-checks.sh; logs in /tmp/kmemprof-kernels.
KERNELS ?=
test-kernels:
	bash .ci/kernels/kernels.sh all $(KERNELS)
