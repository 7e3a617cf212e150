//go:build !linux

package main

import "os/exec"

// dieWithParent has no portable equivalent of Linux's PR_SET_PDEATHSIG;
// the bench's own cleanup has to do.
func dieWithParent(*exec.Cmd) {}
