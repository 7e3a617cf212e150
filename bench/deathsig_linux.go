package main

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel send cmd SIGTERM if the bench dies without
// cleaning up (SIGKILL, a crash), so no server is left running.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
