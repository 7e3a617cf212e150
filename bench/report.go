package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"time"
)

// target is the goal from the issue: durable delivered msgs/s at least
// half of the echo baseline's round trips/s.
const target = 0.50

// report is the outcome of a run, printed as a table or as JSON.
type report struct {
	Clients    int        `json:"clients"`
	WindowS    float64    `json:"window_s"`
	WarmupS    float64    `json:"warmup_s"`
	TextBytes  int        `json:"text_bytes"`
	FrameBytes int        `json:"frame_bytes"` // Send frame, and echo frame, on the wire
	Go         string     `json:"go"`
	OS         string     `json:"os"`
	Arch       string     `json:"arch"`
	CPUs       int        `json:"cpus"`
	Echo       phaseStats `json:"echo"`
	Securechat phaseStats `json:"securechat"`
	Ratio      float64    `json:"ratio"` // securechat per_sec / echo per_sec
	Target     float64    `json:"target"`
	MeetsGoal  bool       `json:"meets_target"`
}

// phaseStats is one phase's figures. For the echo phase an op is a round
// trip and latency is the round-trip time; for securechat an op is a
// delivered message and latency runs from the sender's SendText call to the
// receiver's event.
type phaseStats struct {
	Ops              int     `json:"ops"`
	PerSec           float64 `json:"per_sec"`
	P50MS            float64 `json:"p50_ms"`
	P99MS            float64 `json:"p99_ms"`
	MaxMS            float64 `json:"max_ms"`
	AckedOps         int     `json:"acked_ops,omitempty"`  // securechat: SendText calls completed in the window
	AckP50MS         float64 `json:"ack_p50_ms,omitempty"` // securechat: SendText call → durable ack
	AckP99MS         float64 `json:"ack_p99_ms,omitempty"` //
	ServerCPUUSPerOp float64 `json:"server_cpu_us_per_op"` // server process CPU time per op
	ServerCPUUtil    float64 `json:"server_cpu_util"`      // fraction of one core
	BenchCPUUtil     float64 `json:"bench_cpu_util"`       // the clients' process, fraction of one core
	BenchCPUUSPerOp  float64 `json:"bench_cpu_us_per_op"`  // client-side CPU time per op
}

func newReport(o *options, echo, sc result) *report {
	r := &report{
		Clients:    o.clients,
		WindowS:    o.duration.Seconds(),
		WarmupS:    o.warmup.Seconds(),
		TextBytes:  o.size,
		FrameBytes: sendBodySize(o.text(0), receiverName(0)) + 4 + 7, // length prefix + header (transport §3.1)
		Go:         runtime.Version(),
		OS:         runtime.GOOS,
		Arch:       runtime.GOARCH,
		CPUs:       runtime.NumCPU(),
		Echo:       stats(echo),
		Securechat: stats(sc),
		Target:     target,
	}
	if r.Echo.PerSec > 0 {
		r.Ratio = r.Securechat.PerSec / r.Echo.PerSec
	}
	r.MeetsGoal = r.Ratio >= target
	return r
}

func stats(r result) phaseStats {
	s := phaseStats{
		Ops:              r.Ops,
		PerSec:           r.PerSec(),
		P50MS:            ms(r.RTT.P50),
		P99MS:            ms(r.RTT.P99),
		MaxMS:            ms(r.RTT.Max),
		AckedOps:         r.Ack.N,
		AckP50MS:         ms(r.Ack.P50),
		AckP99MS:         ms(r.Ack.P99),
		ServerCPUUSPerOp: us(r.ServerCPUPerOp()),
		ServerCPUUtil:    r.ServerUtil(),
		BenchCPUUtil:     r.ClientUtil(),
	}
	if r.Ops > 0 {
		s.BenchCPUUSPerOp = us(r.ClientCPU / time.Duration(r.Ops))
	}
	return s
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func (r *report) writeJSON(w io.Writer) error {
	return json.NewEncoder(w).Encode(r) // one line, so runs can be appended to a log
}

func (r *report) writeTable(w io.Writer) error {
	e, s := r.Echo, r.Securechat
	verdict := "meets"
	if !r.MeetsGoal {
		verdict = "BELOW"
	}
	_, err := fmt.Fprintf(w, `securechat bench: %d clients, %gs window (%gs warm-up), %d-byte texts in %d-byte frames, %s %s/%s, %d CPUs
echo baseline (raw quic-go):  %7.0f round trips/s  p50 %6.2f ms  p99 %6.2f ms  server CPU %5.0f µs/rt  (%3.0f%% of one core)
securechat durable 1:1:       %7.0f msgs/s         p50 %6.2f ms  p99 %6.2f ms  server CPU %5.0f µs/msg (%3.0f%% of one core)
  durable ack (SendText):     %7.0f sends/s        p50 %6.2f ms  p99 %6.2f ms
  client-side CPU (bench):    echo %.0f µs/rt (%.0f%% of one core), securechat %.0f µs/msg (%.0f%% of one core)
ratio: %.2f of baseline (target ≥ %.2f: %s)
`,
		r.Clients, r.WindowS, r.WarmupS, r.TextBytes, r.FrameBytes, r.Go, r.OS, r.Arch, r.CPUs,
		e.PerSec, e.P50MS, e.P99MS, e.ServerCPUUSPerOp, 100*e.ServerCPUUtil,
		s.PerSec, s.P50MS, s.P99MS, s.ServerCPUUSPerOp, 100*s.ServerCPUUtil,
		float64(s.AckedOps)/r.WindowS, s.AckP50MS, s.AckP99MS,
		e.BenchCPUUSPerOp, 100*e.BenchCPUUtil, s.BenchCPUUSPerOp, 100*s.BenchCPUUtil,
		r.Ratio, r.Target, verdict)
	return err
}
