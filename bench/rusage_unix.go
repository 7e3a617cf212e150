//go:build unix

package main

import (
	"syscall"
	"time"
)

// selfCPU is this process's user+system CPU time from getrusage(2), in
// microseconds where the kernel keeps them (/proc's ticks are 10 ms).
func selfCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
