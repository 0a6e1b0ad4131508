//go:build unix && !linux

package awslocal

import "syscall"

// killSession SIGKILLs the emulator's process group. Without /proc it
// cannot find the bootstrap, which the emulator runs in a group of its
// own: that bootstrap exits when it next asks the gone emulator for work.
func killSession(sid int) {
	_ = syscall.Kill(-sid, syscall.SIGKILL)
}
