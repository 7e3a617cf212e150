package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve as the echo, relay and bulk servers:
// the bench re-executes os.Executable, which under go test is this binary.
func TestMain(m *testing.M) {
	serveBaseline(os.Args)
	os.Exit(m.Run())
}

// TestBench runs the whole harness briefly against a freshly built server,
// so that the bench cannot rot. It checks that it works, not how fast.
func TestBench(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the server and runs the load for a few seconds")
	}
	bin := filepath.Join(t.TempDir(), "securechat")
	build := exec.Command("go", "build", "-o", bin, "github.com/securechat/securechat")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build server: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"-bin", bin, "-clients", "4", "-duration", "1s", "-warmup", "200ms", "-json", "-group", "8", "-group-messages", "3",
		"-file", "2MiB", "-file-runs", "2", "-file-messages", "5"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("bench: %v\nstderr:\n%s", err, stderr.String())
	}
	var r report
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("bench -json printed %q: %v", stdout.String(), err)
	}
	if r.Clients != 4 || r.WindowS != 1 || r.CPUs < 1 || r.FrameBytes <= r.TextBytes {
		t.Errorf("header: %+v", r)
	}
	if r.RelayRatio <= 0 || r.RelayOfEcho <= 0 {
		t.Errorf("no relay ratios: %+v", r)
	}
	for name, p := range map[string]phaseStats{"echo": r.Echo, "relay": r.Relay, "securechat": r.Securechat} {
		if p.Ops <= 0 || p.PerSec <= 0 || p.P50MS <= 0 || p.P99MS < p.P50MS || p.MaxMS < p.P99MS {
			t.Errorf("%s: implausible throughput or latency: %+v", name, p)
		}
		if p.ServerCPUUSPerOp <= 0 || p.ServerCPUUtil <= 0 || p.BenchCPUUtil <= 0 {
			t.Errorf("%s: no CPU time measured: %+v", name, p)
		}
	}
	if s := r.Securechat; s.AckedOps <= 0 || s.AckP50MS <= 0 {
		t.Errorf("securechat: no durable acks measured: %+v", s)
	}
	if st := r.Setup; !r.Established || st == nil || st.Pairs != 4 || st.FirstSend.P50MS <= 0 || st.Handshake.P50MS < st.FirstSend.P50MS {
		t.Errorf("sessions not established before the load: established %v, setup %+v", r.Established, st)
	}
	if r.ServerData == "" || r.Homes == "" {
		t.Errorf("file systems not described: %q, %q", r.ServerData, r.Homes)
	}
	if r.Ratio <= 0 {
		t.Errorf("ratio %v", r.Ratio)
	}
	if g := r.Group; g == nil || g.Members != 8 || g.Messages != 3 || g.Deliveries != 7*3 || g.DeliveriesPerSec <= 0 ||
		g.SmallCPUUS <= 0 || g.LargeCPUUS <= 0 || g.SmallWireBytes < 0 || g.LargeWireBytes < 0 || g.ServerCPUUS <= 0 {
		t.Errorf("group case: %+v", g)
	}
	if f := r.File; f == nil || f.Bytes != 2<<20 || f.EncodedBytes <= f.Bytes || f.Runs != 2 || f.Target != fileTarget || f.TempFS == "" {
		t.Errorf("file phase: %+v", f)
	} else {
		for name, x := range map[string]transferStats{"raw up": f.RawUp, "raw down": f.RawDown, "up": f.Up, "down": f.Down} {
			if x.MiBPerSec <= 0 || x.Seconds <= 0 || len(x.AllRuns) != 2 || x.BenchCPUUtil <= 0 {
				t.Errorf("file phase, %s: %+v", name, x)
			}
		}
		if f.Up.CryptoS <= 0 || f.Down.CryptoS <= 0 || f.Up.CryptoS >= f.Up.Seconds || f.Down.CryptoS >= f.Down.Seconds {
			t.Errorf("file phase: encryption %v s of an upload of %v s, decryption %v s of a download of %v s", f.Up.CryptoS, f.Up.Seconds, f.Down.CryptoS, f.Down.Seconds)
		}
		if f.UpRatio <= 0 || f.DownRatio <= 0 {
			t.Errorf("file phase: ratios %v, %v", f.UpRatio, f.DownRatio)
		}
		// The transfers' MiB/s during the messages count what the server
		// confirmed, 1 MiB a commit: 5 quick messages may see none.
		c := f.Chat
		if c.Messages != 5 || c.Quiet.P50MS <= 0 || c.Quiet.P99MS < c.Quiet.P50MS || c.Busy.P50MS <= 0 || c.Busy.P99MS < c.Busy.P50MS ||
			c.P50Ratio <= 0 || c.P99Ratio <= 0 || c.Target != chatTarget || c.UpMiBPerSec < 0 || c.DownMiBPerSec < 0 {
			t.Errorf("file phase, chat: %+v", c)
		}
	}
	var table bytes.Buffer
	if err := r.writeTable(&table); err != nil || !strings.Contains(table.String(), "ratio: ") || !strings.Contains(table.String(), "raw quic-go bulk stream up") {
		t.Errorf("table: %v\n%s", err, table.String())
	}
	t.Logf("\n%s", table.String())
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-clients", "0"}, {"-duration", "0s"}, {"extra"}, {"-size", "0"}, {"-file", "2GiB"}, {"-file", "ten"}, {"-file-messages", "0"}, {"-file-runs", "0"}, {"-file-byte-rate", "fast"}} {
		var stderr bytes.Buffer
		if err := run(context.Background(), args, &bytes.Buffer{}, &stderr); err == nil {
			t.Errorf("run %q: no error", args)
		}
	}
	err := run(context.Background(), []string{"-bin", filepath.Join(t.TempDir(), "missing")}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "make build") {
		t.Errorf("missing binary: %v", err)
	}
}

func TestTextCarriesSendTime(t *testing.T) {
	for _, size := range []int{1, 20, 64, 1000} {
		o := &options{size: size}
		at := 1234567890123 * time.Nanosecond
		text := o.text(at)
		if len(text) < size {
			t.Errorf("size %d: text of %d bytes", size, len(text))
		}
		if got, err := sentAt(text); err != nil || got != at {
			t.Errorf("size %d: sentAt(%q) = %v, %v", size, text, got, err)
		}
	}
}

// TestSendBodySizes checks the frame sizing against the client's payload
// layout: a ratchet message is the content plus a fixed overhead, and a
// first message adds the PQXDH header (~1.3 KB with ML-KEM-768).
func TestSendBodySizes(t *testing.T) {
	o := &options{size: 64}
	b, err := sendBodySizes(o.text(0), receiverName(0))
	if err != nil {
		t.Fatal(err)
	}
	if b.Established <= o.size || b.Established > o.size+200 {
		t.Errorf("established: %d-byte Send body for a %d-byte text", b.Established, o.size)
	}
	// 2: the header's length; up to 4 more for longer length prefixes.
	if extra := b.Initial - b.Established - 2 - b.Header; b.Header < 1100 || b.Header > 1600 || extra < 0 || extra > 4 {
		t.Errorf("initial: %d-byte body, %d-byte header, %d established", b.Initial, b.Header, b.Established)
	}
	o.bodies = b
	if o.sendBody() != b.Initial {
		t.Error("sendBody ignores -established=false")
	}
	o.established = true
	if o.sendBody() != b.Established {
		t.Error("sendBody ignores -established")
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	for p, want := range map[float64]time.Duration{0.5: 50, 0.99: 99, 1: 100, 0: 1} {
		if got := percentile(d, p); got != want {
			t.Errorf("p%v = %v, want %v", p, got, want)
		}
	}
	if percentile(nil, 0.5) != 0 {
		t.Error("percentile of nothing")
	}
}

func TestProcCPU(t *testing.T) {
	for start := time.Now(); time.Since(start) < 50*time.Millisecond; {
	}
	d, err := procCPU("self")
	if err != nil || d <= 0 {
		t.Fatalf("procCPU(self) = %v, %v", d, err)
	}
}
