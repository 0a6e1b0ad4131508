//go:build unix

package deploy_test

import (
	"os/exec"
	"syscall"
)

// ownProcessGroup runs cmd in a process group of its own, and makes the
// context's cancellation kill that whole group: node and anything it
// started.
func ownProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
