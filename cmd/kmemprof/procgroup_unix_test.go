//go:build unix

package main

import (
	"os/exec"
	"syscall"
)

// ownProcessGroup starts cmd in a process group of its own and makes the
// context's cancellation kill the whole group: Chromium's zygote, renderer
// and GPU processes must not outlive a hung browser.
func ownProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if pid := cmd.Process.Pid; pid > 1 {
			syscall.Kill(-pid, syscall.SIGKILL)
		}
		return cmd.Process.Kill()
	}
}
