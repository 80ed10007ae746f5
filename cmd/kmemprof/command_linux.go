package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// execShimCmd is the hidden command a traced command starts as: kmemprof
// itself, waiting on fd 3 until the tracer knows its pid (so that --follow
// sees everything the command does, from its exec on), then exec'ing the
// command in the same process.
const execShimCmd = "__exec"

// command is a command traced by record -- CMD.
type command struct {
	cmd  *exec.Cmd
	gate *os.File // write end of the shim's fd 3
	done chan struct{}
	err  error // from Wait, once done is closed
}

// startCommand starts the shim for path with argv; the command itself runs
// once release is called. Its stdin, stdout and stderr are kmemprof's.
func startCommand(path string, argv []string) (*command, error) {
	// This very binary, even if it was replaced or deleted meanwhile.
	const self = "/proc/self/exe"
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, append([]string{execShimCmd, path}, argv...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{r}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("starting %s: %w", argv[0], err)
	}
	r.Close()
	c := &command{cmd: cmd, gate: w, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// pid is the command's process id (the shim's, which becomes the command).
func (c *command) pid() uint32 { return uint32(c.cmd.Process.Pid) }

// release lets the shim exec the command.
func (c *command) release() error {
	_, err := c.gate.Write([]byte{1})
	c.gate.Close()
	return err
}

// abort ends a shim that was never released.
func (c *command) abort() {
	c.gate.Close() // the shim reads EOF and exits
	<-c.done
}

// finish waits for the command to exit, with SIGTERM (and after grace,
// SIGKILL) if it is still running, and returns the exit status kmemprof
// passes on: its code, or 128+N when signal N ended it.
func (c *command) finish(grace time.Duration, stderr io.Writer) int {
	select {
	case <-c.done:
	default:
		fmt.Fprintf(stderr, "the command (pid %d) is still running: sending it SIGTERM\n", c.cmd.Process.Pid)
		c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(grace):
			fmt.Fprintf(stderr, "the command did not exit %s after SIGTERM: killing it\n", grace)
			c.cmd.Process.Kill()
			<-c.done
		}
	}
	return exitStatus(c.err)
}

// exitStatus maps a command's Wait error to a shell-style exit status.
func exitStatus(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return exitError
}

// execShim is the shim's side: wait for the gate, then become the command.
func execShim(args []string) int {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "kmemprof: internal command "+execShimCmd+" needs a path and argv")
		return exitUsage
	}
	gate := os.NewFile(3, "gate")
	var b [1]byte
	if n, _ := gate.Read(b[:]); n != 1 {
		return exitError // the tracer gave up before the command could start
	}
	gate.Close()
	err := syscall.Exec(args[0], args[1:], os.Environ())
	fmt.Fprintf(os.Stderr, "kmemprof: running %s: %v\n", args[0], err)
	if errors.Is(err, syscall.ENOENT) {
		return 127
	}
	return 126
}
