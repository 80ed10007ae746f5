package bpftest

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func eventfdLeaker(n int, in io.Reader, out io.Writer) error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("reading RLIMIT_NOFILE: %w", err)
	}
	if need := uint64(n + 64); lim.Cur < need {
		lim.Cur = need
		if lim.Max < need {
			lim.Max = need
		}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			return fmt.Errorf("raising RLIMIT_NOFILE to %d: %w", need, err)
		}
	}
	fmt.Fprintln(out, "ready")
	sc := bufio.NewScanner(in)
	if !sc.Scan() {
		return nil
	}
	fds := make([]int, 0, n)
	for i := 0; i < n; i++ {
		fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
		if err != nil {
			return fmt.Errorf("eventfd %d: %w", i, err)
		}
		fds = append(fds, fd)
	}
	fmt.Fprintf(out, "held %d\n", n)
	if !sc.Scan() {
		return nil // parent gone: exit, the kernel closes the fds
	}
	for _, fd := range fds {
		unix.Close(fd)
	}
	fmt.Fprintf(out, "released %d\n", n)
	sc.Scan() // wait for the parent to close stdin
	return nil
}

// setCgroup starts cmd inside the cgroup v2 directory f (clone3 CLONE_INTO_CGROUP).
func setCgroup(cmd *exec.Cmd, f *os.File) {
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
}

func steadyLeaker(n int, d time.Duration, in io.Reader, out io.Writer) error {
	// One at a time, evenly: in bursts, the gaps between them would be
	// windows of pure churn at the call sites the leak shares with others
	// (every file open allocates its file at the leak's filp call site),
	// which the adaptive mode cools as churn.
	start := time.Now()
	var fds []int
	for len(fds) < n {
		fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
		if err != nil {
			return fmt.Errorf("eventfd: %w", err)
		}
		fds = append(fds, fd)
		if ahead := time.Duration(len(fds))*d/time.Duration(n) - time.Since(start); ahead > 0 {
			time.Sleep(ahead)
		}
	}
	fmt.Fprintf(out, "held %d\n", n)
	bufio.NewScanner(in).Scan() // until the parent closes stdin
	return nil
}

func treeWalker(dir string, n int, in io.Reader, out io.Writer) error {
	const perDir = 1000
	for i := 0; i < n; i++ {
		sub := filepath.Join(dir, strconv.Itoa(i/perDir))
		if i%perDir == 0 {
			if err := os.MkdirAll(sub, 0o755); err != nil {
				return err
			}
		}
		f, err := os.Create(filepath.Join(sub, strconv.Itoa(i)))
		if err != nil {
			return err
		}
		f.Close()
	}
	fmt.Fprintf(out, "made %d\n", n)
	sc := bufio.NewScanner(in)
	if !sc.Scan() { // "walk"
		return nil
	}
	stop := make(chan struct{})
	go func() { sc.Scan(); close(stop) }()
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		// The first walk fills the caches; later ones only keep them
		// warm, once a second, not to take the CPU from the other
		// processes of the test.
		filepath.WalkDir(dir, func(string, fs.DirEntry, error) error { return nil })
		select {
		case <-stop:
			return nil
		case <-time.After(time.Second):
		}
	}
}

func pipeFiller(n int, in io.Reader, out io.Writer) error {
	page := make([]byte, 4096)
	var fds []int
	for i := 0; i < n; i++ {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			return fmt.Errorf("pipe: %w", err)
		}
		if _, err := unix.Write(p[1], page); err != nil {
			return fmt.Errorf("writing a pipe: %w", err)
		}
		fds = append(fds, p[0], p[1])
	}
	fmt.Fprintf(out, "filled %d\n", n)
	bufio.NewScanner(in).Scan()
	for _, fd := range fds {
		unix.Close(fd)
	}
	return nil
}

// mmapChurn maps n times eight regions with gaps between them and unmaps
// them in another order: each region is a VMA in the process's maple tree,
// whose nodes are allocated and freed (in bulk) as the tree changes.
func mmapChurn(n int, in io.Reader, out io.Writer) error {
	sc := bufio.NewScanner(in)
	if !sc.Scan() {
		return nil
	}
	page := unix.Getpagesize()
	for i := 0; i < n; i++ {
		var regions [8][]byte
		for j := range regions {
			b, err := unix.Mmap(-1, 0, (j+1)*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
			if err != nil {
				return fmt.Errorf("mmap: %w", err)
			}
			regions[j] = b
		}
		for _, j := range []int{3, 0, 6, 1, 7, 2, 5, 4} {
			if err := unix.Munmap(regions[j]); err != nil {
				return fmt.Errorf("munmap: %w", err)
			}
		}
	}
	fmt.Fprintf(out, "walked %d\n", n)
	sc.Scan()
	return nil
}

func openCloseLoop(n int) (float64, error) {
	runtime.LockOSThread()
	loop := func(n int) error {
		for range n {
			fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			unix.Close(fd)
		}
		return nil
	}
	if err := loop(n / 10); err != nil {
		return 0, err
	}
	start := time.Now()
	if err := loop(n); err != nil {
		return 0, err
	}
	return float64(time.Since(start).Nanoseconds()) / float64(max(n, 1)), nil
}

func holdEventfds(n int, out io.Writer) error {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	for i := 0; i < n; i++ {
		if _, err := unix.Eventfd(0, unix.EFD_CLOEXEC); err != nil {
			return fmt.Errorf("eventfd: %w", err)
		}
	}
	fmt.Fprintf(out, "held %d %d\n", n, os.Getpid())
	select {
	case <-sig:
	case <-time.After(5 * time.Minute):
	}
	return nil
}

// lockFile takes an exclusive lock on the file at path, made if need be,
// waiting for it; closing the file releases it.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// objectsMaker makes, on "make", n files in dir (a tmpfs: an inode of
// shmem_inode_cache and a dentry each, allocated with
// kmem_cache_alloc_lru), n timerfds (a kmalloc'd timerfd_ctx, a file and a
// pseudo dentry each) and n/4 pipes holding one written page each (a page
// allocation, and the pipe's kmalloc'd pipe_inode_info); it prints "made N"
// and holds them (the descriptors in flight in a unix socket). On "release"
// it closes and unlinks them all and prints "released N".
func objectsMaker(n int, dir string, in io.Reader, out io.Writer) error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("reading RLIMIT_NOFILE: %w", err)
	}
	if need := uint64(n + n/2 + 64); lim.Cur < need {
		lim.Cur = min(max(need, lim.Cur), lim.Max)
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			return fmt.Errorf("raising RLIMIT_NOFILE to %d: %w", lim.Cur, err)
		}
	}
	fmt.Fprintln(out, "ready")
	sc := bufio.NewScanner(in)
	if !sc.Scan() {
		return nil
	}
	var files []string
	var fds []int
	for i := 0; i < n; i++ {
		p := filepath.Join(dir, "f"+strconv.Itoa(i))
		fd, err := unix.Open(p, unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("making %s: %w", p, err)
		}
		unix.Close(fd)
		files = append(files, p)
	}
	for i := 0; i < n; i++ {
		fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_CLOEXEC)
		if err != nil {
			return fmt.Errorf("timerfd %d: %w", i, err)
		}
		fds = append(fds, fd)
	}
	page := make([]byte, unix.Getpagesize())
	for i := 0; i < n/4; i++ {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			return fmt.Errorf("pipe %d: %w", i, err)
		}
		if _, err := unix.Write(p[1], page); err != nil {
			return fmt.Errorf("writing pipe %d: %w", i, err)
		}
		fds = append(fds, p[0], p[1])
	}
	// Held in flight in a unix socket, not in the descriptor table: a
	// process that lists every /proc/PID/fd (a monitoring agent) would
	// otherwise make proc inodes and dentries for each, growing caches
	// under the capture with allocations of its own.
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socketpair: %w", err)
	}
	for i := 0; i < len(fds); i += inflightBatch {
		batch := fds[i:min(i+inflightBatch, len(fds))]
		if err := unix.Sendmsg(pair[0], []byte{0}, unix.UnixRights(batch...), nil, 0); err != nil {
			return fmt.Errorf("sending descriptors %d-%d: %w", i, i+len(batch), err)
		}
		for _, fd := range batch {
			unix.Close(fd)
		}
	}
	fmt.Fprintf(out, "made %d\n", n)
	if !sc.Scan() {
		return nil
	}
	unix.Close(pair[1])
	unix.Close(pair[0])
	for _, p := range files {
		if err := unix.Unlink(p); err != nil {
			return fmt.Errorf("removing %s: %w", p, err)
		}
	}
	fmt.Fprintf(out, "released %d\n", n)
	sc.Scan() // until the parent closes stdin
	return nil
}

// anonChurn maps 4 MiB of anonymous memory, touches every page and unmaps
// it, over and over until stdin closes: page allocations and frees at the
// anonymous page fault's call site, many thousands a second.
func anonChurn(in io.Reader, out io.Writer) error {
	stop := make(chan struct{})
	go func() { bufio.NewScanner(in).Scan(); close(stop) }()
	page := unix.Getpagesize()
	fmt.Fprintln(out, "churning")
	for rounds := 0; ; rounds++ {
		select {
		case <-stop:
			return nil
		default:
		}
		b, err := unix.Mmap(-1, 0, 4<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			return fmt.Errorf("mmap: %w", err)
		}
		for i := 0; i < len(b); i += page {
			b[i] = 1
		}
		if err := unix.Munmap(b); err != nil {
			return fmt.Errorf("munmap: %w", err)
		}
	}
}

// fileStorm makes n files in dir, evenly over d, opening each for writing
// (O_CREAT) and stat'ing it, then prints "made N" and waits for stdin to
// close: the dentries, inodes and their satellites of a busy file system.
func fileStorm(dir string, n int, d time.Duration, in io.Reader, out io.Writer) error {
	start := time.Now()
	var st unix.Stat_t
	for i := 0; i < n; i++ {
		p := filepath.Join(dir, "s"+strconv.Itoa(i))
		fd, err := unix.Open(p, unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return fmt.Errorf("making %s: %w", p, err)
		}
		unix.Close(fd)
		if err := unix.Stat(p, &st); err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		if i%100 == 99 {
			if ahead := time.Duration(i+1)*d/time.Duration(n) - time.Since(start); ahead > 0 {
				time.Sleep(ahead)
			}
		}
	}
	fmt.Fprintf(out, "made %d\n", n)
	bufio.NewScanner(in).Scan()
	return nil
}
