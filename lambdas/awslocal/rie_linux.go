package awslocal

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
)

// killSession SIGKILLs the processes of the session sid: the emulator's
// process group and the bootstrap, which the emulator runs in a group of
// its own. A session's ID is not reused while a process is in it.
func killSession(sid int) {
	_ = syscall.Kill(-sid, syscall.SIGKILL)
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp session ...; comm may hold anything.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := bytes.Fields(stat[i+1:])
		if len(f) < 4 {
			continue
		}
		if s, err := strconv.Atoi(string(f[3])); err == nil && s == sid {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
