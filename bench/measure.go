package main

import (
	"context"
	"io"
	"slices"
	"sync"
	"time"
)

// epoch is the process-wide origin of every timestamp the bench takes.
// Durations since it come from the monotonic clock, so a send time written
// into a message by one goroutine and a receive time read by another are
// directly comparable (both run in this process).
var epoch = time.Now()

// now is the time since epoch.
func now() time.Duration { return time.Since(epoch) }

// window is the measured interval [begin, end) in time since epoch. Work
// finished before begin is warm-up; work finished at or after end is not
// counted.
type window struct {
	begin, end time.Duration
}

func (w window) contains(t time.Duration) bool { return t >= w.begin && t < w.end }

// sleepUntil waits until t (time since epoch) or until done is closed, and
// reports whether t was reached.
func sleepUntil(t time.Duration, done <-chan struct{}) bool {
	d := t - now()
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-done:
		return false
	}
}

// samples collects the latencies of the operations completed inside the
// window. Each worker appends to its own slice and hands it over once at the
// end, so the hot path takes no lock.
type samples struct {
	mu  sync.Mutex
	all []time.Duration
}

func (s *samples) add(worker []time.Duration) {
	s.mu.Lock()
	s.all = append(s.all, worker...)
	s.mu.Unlock()
}

// latency summarises a set of samples.
type latency struct {
	N        int
	P50, P99 time.Duration
	Max      time.Duration
}

func (s *samples) summary() latency {
	s.mu.Lock()
	defer s.mu.Unlock()
	slices.Sort(s.all)
	return latency{
		N:   len(s.all),
		P50: percentile(s.all, 0.50),
		P99: percentile(s.all, 0.99),
		Max: percentile(s.all, 1),
	}
}

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// cpuSample is the CPU time of the server process and of the bench process
// at one instant.
type cpuSample struct {
	server, self time.Duration
	all          time.Duration // every process on the machine; -1: unknown
	loopback     int64         // bytes received on the loopback interface, by anyone; -1: unknown
}

// result is what one phase (echo baseline or securechat) measured.
type result struct {
	Ops       int           // round trips, or messages delivered, inside the window
	Window    time.Duration // length of the window
	RTT       latency       // echo: round trip; securechat: send → deliver
	Ack       latency       // securechat only: send → durable ack (SendText returned)
	ServerCPU time.Duration // server process CPU time during the window
	ClientCPU time.Duration // bench process CPU time during the window
	Loopback  int64         // bytes over the loopback interface during the window (0: unknown)
	OtherCPU  time.Duration // CPU time of every other process during the window (-1: unknown)

	Setup      setupStats // securechat only: session start before the load
	ServerData string     // securechat only: file system of the server's data
	Homes      string     // securechat only: file system of the client homes
}

// PerSec is the throughput over the window.
func (r result) PerSec() float64 {
	if r.Window <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Window.Seconds()
}

// ServerCPUPerOp is the server's CPU time per operation.
func (r result) ServerCPUPerOp() time.Duration {
	if r.Ops == 0 {
		return 0
	}
	return r.ServerCPU / time.Duration(r.Ops)
}

// ServerUtil is the server's CPU use as a fraction of one core.
func (r result) ServerUtil() float64 {
	if r.Window <= 0 {
		return 0
	}
	return r.ServerCPU.Seconds() / r.Window.Seconds()
}

// OtherUtil is the CPU use of the machine's other processes (not the
// server, not the bench) as a fraction of one core, or -1 if unknown: the
// figures of a window where it is high measured other people's work too.
func (r result) OtherUtil() float64 {
	if r.Window <= 0 || r.OtherCPU < 0 {
		return -1
	}
	return r.OtherCPU.Seconds() / r.Window.Seconds()
}

// ClientUtil is the bench process's CPU use as a fraction of one core.
func (r result) ClientUtil() float64 {
	if r.Window <= 0 {
		return 0
	}
	return r.ClientCPU.Seconds() / r.Window.Seconds()
}

// measureWindow sleeps through the warm-up and the window while the load
// runs, and returns the CPU time the server and the bench used inside the
// window; prof, if not nil, records profiles over the window. It returns
// early with ctx's error on failure or interrupt.
func measureWindow(ctx context.Context, w window, srv *proc, prof *profiler, stderr io.Writer) (cpuSample, error) {
	if !sleepUntil(w.begin, ctx.Done()) {
		return cpuSample{}, context.Cause(ctx)
	}
	if err := prof.start(srv, stderr); err != nil {
		return cpuSample{}, err
	}
	defer prof.stop()
	start, err := sampleCPU(srv)
	if err != nil {
		return cpuSample{}, err
	}
	if !sleepUntil(w.end, ctx.Done()) {
		return cpuSample{}, context.Cause(ctx)
	}
	end, err := sampleCPU(srv)
	if err != nil {
		return cpuSample{}, err
	}
	if err := prof.stop(); err != nil {
		return cpuSample{}, err
	}
	d := cpuSample{server: end.server - start.server, self: end.self - start.self, all: -1}
	if start.loopback >= 0 && end.loopback >= start.loopback {
		d.loopback = end.loopback - start.loopback
	}
	if start.all >= 0 && end.all >= start.all {
		d.all = end.all - start.all
	}
	return d, nil
}

// other is the CPU time of the processes other than the server and the
// bench in a window's CPU sample, or -1.
func other(c cpuSample) time.Duration {
	if c.all < 0 {
		return -1
	}
	// The machine's and the processes' counters tick separately: an idle
	// machine can come out a tick or two below zero.
	return max(0, c.all-c.server-c.self)
}

// baselineResult is a baseline phase's result: its latencies and the CPU
// and traffic measured over window w.
func baselineResult(w window, lat latency, cpu cpuSample) result {
	return result{Ops: lat.N, Window: w.end - w.begin, RTT: lat, ServerCPU: cpu.server, ClientCPU: cpu.self, Loopback: cpu.loopback, OtherCPU: other(cpu)}
}
