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
	Clients    int     `json:"clients"`
	WindowS    float64 `json:"window_s"`
	WarmupS    float64 `json:"warmup_s"`
	TextBytes  int     `json:"text_bytes"`
	FrameBytes int     `json:"frame_bytes"` // Send frame, and echo frame, on the wire
	// Established: sessions were started and confirmed before the load,
	// so its messages are plain ratchet messages; otherwise each carries
	// the PQXDH header of HeaderBytes.
	Established  bool        `json:"established"`
	HeaderBytes  int         `json:"pqxdh_header_bytes"`
	ServerData   string      `json:"server_data_fs"`
	Homes        string      `json:"homes_fs"`
	Setup        *setupStats `json:"setup,omitempty"` // with Established
	Go           string      `json:"go"`
	OS           string      `json:"os"`
	Arch         string      `json:"arch"`
	CPUs         int         `json:"cpus"`
	Echo         phaseStats  `json:"echo"`
	EchoSkipped  bool        `json:"echo_skipped,omitempty"` // -echo=false: no baseline, no ratio
	Relay        phaseStats  `json:"relay"`
	RelaySkipped bool        `json:"relay_skipped,omitempty"`
	Securechat   phaseStats  `json:"securechat"`
	Ratio        float64     `json:"ratio"` // securechat per_sec / echo per_sec
	// RelayRatio is securechat per_sec / relay per_sec, and RelayOfEcho
	// relay per_sec / echo per_sec: the most any server of this protocol's
	// shape reaches against the echo baseline.
	RelayRatio  float64 `json:"relay_ratio,omitempty"`
	RelayOfEcho float64 `json:"relay_of_echo,omitempty"`
	Target      float64 `json:"target"`
	MeetsGoal   bool    `json:"meets_target"`
	// Group is the group case (group.go); nil with -group 0.
	Group *groupStats `json:"group,omitempty"`
	// File is the file phase (file.go); nil with -file 0.
	File *fileStats `json:"file,omitempty"`
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
	AckedOps         int     `json:"acked_ops,omitempty"`   // securechat: SendText calls completed in the window
	AckP50MS         float64 `json:"ack_p50_ms,omitempty"`  // securechat: SendText call → durable ack
	AckP99MS         float64 `json:"ack_p99_ms,omitempty"`  //
	ServerCPUUSPerOp float64 `json:"server_cpu_us_per_op"`  // server process CPU time per op
	ServerCPUUtil    float64 `json:"server_cpu_util"`       // fraction of one core
	BenchCPUUtil     float64 `json:"bench_cpu_util"`        // the clients' process, fraction of one core
	BenchCPUUSPerOp  float64 `json:"bench_cpu_us_per_op"`   // client-side CPU time per op
	LoopbackPerOp    float64 `json:"loopback_bytes_per_op"` // loopback traffic per op, both ways (0: unknown)
	OtherCPUUtil     float64 `json:"other_cpu_util"`        // the machine's other processes, fraction of one core (-1: unknown)
}

func newReport(o *options, echo, relay, sc result) *report {
	r := &report{
		Clients:      o.clients,
		WindowS:      o.duration.Seconds(),
		WarmupS:      o.warmup.Seconds(),
		TextBytes:    o.size,
		FrameBytes:   frameSize(o.sendBody()),
		Established:  o.established,
		HeaderBytes:  o.bodies.Header,
		ServerData:   sc.ServerData,
		Homes:        sc.Homes,
		Go:           runtime.Version(),
		OS:           runtime.GOOS,
		Arch:         runtime.GOARCH,
		CPUs:         runtime.NumCPU(),
		Echo:         stats(echo),
		EchoSkipped:  !o.echo,
		Relay:        stats(relay),
		RelaySkipped: !o.relay,
		Securechat:   stats(sc),
		Target:       target,
	}
	if r.Echo.PerSec > 0 {
		r.Ratio = r.Securechat.PerSec / r.Echo.PerSec
		r.RelayOfEcho = r.Relay.PerSec / r.Echo.PerSec
	}
	if r.Relay.PerSec > 0 {
		r.RelayRatio = r.Securechat.PerSec / r.Relay.PerSec
	}
	r.MeetsGoal = r.Ratio >= target
	if o.established {
		r.Setup = &sc.Setup
	}
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
		OtherCPUUtil:     r.OtherUtil(),
	}
	if r.Ops > 0 {
		s.BenchCPUUSPerOp = us(r.ClientCPU / time.Duration(r.Ops))
		s.LoopbackPerOp = float64(r.Loopback) / float64(r.Ops)
	}
	return s
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// pct formats a fraction of one core, or says that it is unknown.
func pct(f float64) string {
	if f < 0 {
		return "unknown"
	}
	return fmt.Sprintf("%.0f%% of one core", 100*f)
}

func (r *report) writeJSON(w io.Writer) error {
	return json.NewEncoder(w).Encode(r) // one line, so runs can be appended to a log
}

func (r *report) writeTable(w io.Writer) error {
	e, s := r.Echo, r.Securechat
	verdict := "meets"
	if !r.MeetsGoal {
		verdict = "BELOW"
	}
	echo := fmt.Sprintf("%7.0f round trips/s  p50 %6.2f ms  p99 %6.2f ms  server CPU %5.0f µs/rt  (%3.0f%% of one core)",
		e.PerSec, e.P50MS, e.P99MS, e.ServerCPUUSPerOp, 100*e.ServerCPUUtil)
	echoCPU := fmt.Sprintf("echo %.0f µs/rt (%.0f%% of one core), ", e.BenchCPUUSPerOp, 100*e.BenchCPUUtil)
	echoWire := fmt.Sprintf("echo %.0f B/rt, ", e.LoopbackPerOp)
	echoOther := fmt.Sprintf("echo window %s, ", pct(e.OtherCPUUtil))
	ratio := fmt.Sprintf("%.2f of baseline (target ≥ %.2f: %s)", r.Ratio, r.Target, verdict)
	if r.EchoSkipped {
		echo, echoCPU, echoWire, echoOther, ratio = "skipped (-echo=false)", "", "", "", "none without the echo baseline"
	}
	relay := fmt.Sprintf("%7.0f msgs/s         p50 %6.2f ms  p99 %6.2f ms  server CPU %5.0f µs/msg (%3.0f%% of one core)",
		r.Relay.PerSec, r.Relay.P50MS, r.Relay.P99MS, r.Relay.ServerCPUUSPerOp, 100*r.Relay.ServerCPUUtil)
	relayRatio := fmt.Sprintf("; %.2f of the relay baseline", r.RelayRatio)
	if r.RelayOfEcho > 0 {
		relayRatio += fmt.Sprintf(", which is itself %.2f of the echo baseline", r.RelayOfEcho)
	}
	if r.RelaySkipped {
		relay, relayRatio = "skipped (-relay=false)", ""
	}
	sessions := "established sessions"
	setup := "  session start: none before the window; every message carries the PQXDH header (-established=false)\n"
	if !r.Established {
		sessions = fmt.Sprintf("unanswered sessions, %d-byte PQXDH header in each", r.HeaderBytes)
	} else if st := r.Setup; st != nil {
		setup = fmt.Sprintf("  session start (before the window): %d pairs in %.2f s; first SendText p50 %.1f ms (max %.1f), until the answer is decrypted p50 %.1f ms (max %.1f)\n",
			st.Pairs, st.WallS, st.FirstSend.P50MS, st.FirstSend.MaxMS, st.Handshake.P50MS, st.Handshake.MaxMS)
	}
	_, err := fmt.Fprintf(w, `securechat bench: %d clients, %gs window (%gs warm-up), %d-byte texts in %d-byte frames (%s), %s %s/%s, %d CPUs
server data on %s, client homes on %s
echo baseline (raw quic-go):  %s
relay baseline (raw quic-go): %s
securechat durable 1:1:       %7.0f msgs/s         p50 %6.2f ms  p99 %6.2f ms  server CPU %5.0f µs/msg (%3.0f%% of one core)
  durable ack (SendText):     %7.0f sends/s        p50 %6.2f ms  p99 %6.2f ms
  client-side CPU (bench):    %ssecurechat %.0f µs/msg (%.0f%% of one core)
  loopback traffic:           %ssecurechat %.0f B/msg (QUIC packets both ways)
  other processes' CPU:       %ssecurechat window %s
%sratio: %s%s
`,
		r.Clients, r.WindowS, r.WarmupS, r.TextBytes, r.FrameBytes, sessions, r.Go, r.OS, r.Arch, r.CPUs,
		r.ServerData, r.Homes,
		echo,
		relay,
		s.PerSec, s.P50MS, s.P99MS, s.ServerCPUUSPerOp, 100*s.ServerCPUUtil,
		float64(s.AckedOps)/r.WindowS, s.AckP50MS, s.AckP99MS,
		echoCPU, s.BenchCPUUSPerOp, 100*s.BenchCPUUtil,
		echoWire, s.LoopbackPerOp,
		echoOther, pct(s.OtherCPUUtil),
		setup, ratio, relayRatio)
	if err == nil && r.Group != nil {
		err = r.writeGroup(w)
	}
	if err == nil && r.File != nil {
		err = r.writeFile(w)
	}
	return err
}

func (r *report) writeGroup(w io.Writer) error {
	g := r.Group
	_, err := fmt.Fprintf(w, `securechat group messages: one sender, %d texts to a group of %d and to one of %d (setup %.1f s)
  sender CPU per message:     %6.0f µs (%d members)   %6.0f µs (%d members)   ratio %.2f
  loopback bytes per message: %6d B  (%d members)   %6d B  (%d members)
  durable ack (SendGroupText): %5.2f ms (%d members)   %5.2f ms (%d members)
  server fan-out:             %7.0f deliveries/s (%d deliveries of the %d-member group's texts)  server CPU %4.0f µs/delivery
`,
		g.Messages, groupSmall, g.Members, g.SetupS,
		g.SmallCPUUS, groupSmall, g.LargeCPUUS, g.Members, g.LargeCPUUS/max(g.SmallCPUUS, 1),
		g.SmallWireBytes, groupSmall, g.LargeWireBytes, g.Members,
		g.SmallAckMS, groupSmall, g.LargeAckMS, g.Members,
		g.DeliveriesPerSec, g.Deliveries, g.Members, g.ServerCPUUS)
	return err
}

// meets says whether a figure meets its target.
func meets(ok bool) string {
	if ok {
		return "meets"
	}
	return "BELOW"
}

func (r *report) writeFile(w io.Writer) error {
	f := r.File
	line := func(t transferStats) string {
		return fmt.Sprintf("%6.1f MiB/s (%5.3f s; runs %s)  CPU/MiB: server %4.1f ms, bench %4.1f ms; CPU: server %3.0f%%, bench %3.0f%%, other processes %s, steal %s",
			t.MiBPerSec, t.Seconds, runs(t.AllRuns), t.ServerCPUMSPerMiB, t.BenchCPUMSPerMiB, 100*t.ServerCPUUtil, 100*t.BenchCPUUtil, pct(t.OtherCPUUtil), pct(t.StealUtil))
	}
	c := f.Chat
	paced := ""
	if f.ByteRate > 0 {
		paced = fmt.Sprintf("; transfers PACED at %s/s per account (-file-byte-rate)", fmtMiB(f.ByteRate))
	}
	_, err := fmt.Fprintf(w, `securechat files: %s file (%s encoded), median of %d runs each way; server data on %s, files on %s%s
  raw quic-go bulk stream up:   %s
  raw quic-go bulk stream down: %s
  securechat upload:            %s
    encryption %.3f s of it, the upload alone %.1f MiB/s
  securechat download:          %s
    decryption %.3f s of it, the download alone %.1f MiB/s
  ratio: up %.2f, down %.2f of the raw stream (target ≥ %.2f: %s)
  chat during transfers: %d messages one after another without, then during uploads and downloads (%d and %d completed meanwhile, at %.1f and %.1f MiB/s)
    send → deliver without:  p50 %6.2f ms  p99 %6.2f ms  max %6.2f ms  (other processes %s, steal %s)
    send → deliver during:   p50 %6.2f ms  p99 %6.2f ms  max %6.2f ms  (other processes %s, steal %s)
    ratio: p50 ×%.2f, p99 ×%.2f (target ≤ ×%.0f: %s)
`,
		fmtMiB(f.Bytes), fmtMiB(f.EncodedBytes), f.Runs, f.ServerData, f.TempFS, paced,
		line(f.RawUp), line(f.RawDown),
		line(f.Up), f.Up.CryptoS, f.Up.TransferMiBPerSec,
		line(f.Down), f.Down.CryptoS, f.Down.TransferMiBPerSec,
		f.UpRatio, f.DownRatio, f.Target, meets(f.MeetsTarget),
		c.Messages, c.Uploads, c.Downloads, c.UpMiBPerSec, c.DownMiBPerSec,
		c.Quiet.P50MS, c.Quiet.P99MS, c.Quiet.MaxMS, pct(c.Quiet.OtherCPUUtil), pct(c.Quiet.StealUtil),
		c.Busy.P50MS, c.Busy.P99MS, c.Busy.MaxMS, pct(c.Busy.OtherCPUUtil), pct(c.Busy.StealUtil),
		c.P50Ratio, c.P99Ratio, c.Target, meets(c.MeetsTarget))
	return err
}

// runs lists rates of runs, as "212, 230, 198".
func runs(rates []float64) string {
	s := ""
	for i, r := range rates {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%.0f", r)
	}
	return s
}
