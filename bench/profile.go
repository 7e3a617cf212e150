package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"syscall"
	"time"
)

// profiler records CPU profiles over the securechat window, to find where
// the time goes: the bench process (the client engines) with runtime/pprof,
// the server process with Linux perf (the server binary has no profiling
// hook, and the bench must not need one). The zero value records nothing;
// a nil *profiler is valid too.
type profiler struct {
	clientOut string // -cpuprofile: pprof profile of the bench process
	serverOut string // -perf: perf.data of the server process

	clientFile *os.File
	perf       *exec.Cmd
	perfDone   chan error
}

// start begins recording; server is the process to record with perf.
func (p *profiler) start(server *proc, stderr io.Writer) error {
	if p == nil {
		return nil
	}
	if p.clientOut != "" {
		f, err := os.Create(p.clientOut)
		if err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		p.clientFile = f
	}
	if p.serverOut != "" {
		// -g: the Go toolchain keeps frame pointers, so perf can walk
		// the server's stacks. Build the server without -s -w (plain
		// go build) to get symbols.
		p.perf = exec.Command("perf", "record", "-g", "-o", p.serverOut, "-p", strconv.Itoa(server.pid()))
		p.perf.Stdout = io.Discard
		p.perf.Stderr = &prefixWriter{prefix: "perf: ", w: stderr}
		if err := p.perf.Start(); err != nil {
			p.perf = nil
			return fmt.Errorf("-perf: %w", err)
		}
		p.perfDone = make(chan error, 1)
		go func() { p.perfDone <- p.perf.Wait() }()
	}
	return nil
}

// stop ends recording and writes the profiles. It is safe to call more
// than once.
func (p *profiler) stop() error {
	if p == nil {
		return nil
	}
	var errs []error
	if p.clientFile != nil {
		pprof.StopCPUProfile()
		errs = append(errs, p.clientFile.Close())
		p.clientFile = nil
	}
	if p.perf != nil {
		p.perf.Process.Signal(syscall.SIGINT) // perf writes its file on SIGINT
		select {
		case err := <-p.perfDone:
			var ee *exec.ExitError
			if err != nil && !errors.As(err, &ee) {
				errs = append(errs, fmt.Errorf("perf: %w", err))
			}
		case <-time.After(30 * time.Second):
			p.perf.Process.Kill()
			errs = append(errs, errors.New("perf did not stop"))
		}
		p.perf = nil
	}
	return errors.Join(errs...)
}
