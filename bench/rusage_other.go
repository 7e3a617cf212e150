//go:build !unix

package main

import "time"

// selfCPU is this process's CPU time, as procCPU reads it.
func selfCPU() (time.Duration, error) { return procCPU("self") }
