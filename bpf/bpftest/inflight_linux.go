package bpftest

import (
	"bufio"
	"fmt"
	"io"

	"golang.org/x/sys/unix"
)

// inflightBatch is how many descriptors one SCM_RIGHTS message carries
// (the kernel's SCM_MAX_FD is 253).
const inflightBatch = 250

// inflightLeaker is eventfdLeaker with the eventfds held in flight: each
// batch is sent over a unix socket pair to its other end, which never
// reads, and closed, so that the process's descriptor table holds two
// sockets while the kernel keeps every eventfd (file, dentry, context, LSM
// blob) alive in the socket's queue. Closing the receiving end frees them.
func inflightLeaker(n int, in io.Reader, out io.Writer) error {
	fmt.Fprintln(out, "ready")
	sc := bufio.NewScanner(in)
	if !sc.Scan() {
		return nil
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socketpair: %w", err)
	}
	for made := 0; made < n; {
		k := min(inflightBatch, n-made)
		fds := make([]int, 0, k)
		for i := 0; i < k; i++ {
			fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
			if err != nil {
				return fmt.Errorf("eventfd %d: %w", made+i, err)
			}
			fds = append(fds, fd)
		}
		if err := unix.Sendmsg(pair[0], []byte{0}, unix.UnixRights(fds...), nil, 0); err != nil {
			return fmt.Errorf("sending eventfds %d-%d: %w", made, made+k, err)
		}
		for _, fd := range fds {
			unix.Close(fd)
		}
		made += k
	}
	fmt.Fprintf(out, "held %d\n", n)
	if !sc.Scan() {
		return nil
	}
	unix.Close(pair[1])
	unix.Close(pair[0])
	fmt.Fprintf(out, "released %d\n", n)
	sc.Scan()
	return nil
}
