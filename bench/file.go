package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client"
	"github.com/securechat/securechat/e2ee"
)

// The file phase (issue 12, protocol.md §6.8, §9.5): encrypted file
// transfer against a raw quic-go bulk stream of the same size in the same
// run (bulk.go), and chat latency while a transfer runs. After the other
// phases, against a server process of its own with the limits lifted and
// the blob bounds raised above the file, four accounts: sender000 sends
// files to receiver000; sender001 and receiver001 chat.
//
// Throughput, -file-runs times each way, the median reported, each run a
// raw bulk transfer (bulk.go) and then securechat's, so that both see the
// same moments of a shared machine. sender000 encrypts a random file of
// -file bytes, read from a file on the homes' file system, with the
// attachment writer into a temporary file beside it (as client/history.go
// does), and uploads that with Client.Upload for receiver000's device: the
// upload's time includes the encryption and ends when the server has
// confirmed (fsynced) every chunk. receiver000
// downloads it into a temporary file (Client.Download) and decrypts it
// with the attachment reader, which checks every chunk and the digest,
// into another: the download's time includes the decryption. Then, not
// timed, the plaintext's SHA-256 must be the original's, and BlobDone.
//
// Chat latency: sender001 sends -file-messages texts to receiver001 one
// after another, each once the previous was delivered, with send →
// deliver latency measured as the 1:1 phase does (the send time rides in
// the text; the receiver's goroutine reads it off the event). First with
// nothing else running, then while sender000 uploads the file's
// ciphertext again and again (new files) and receiver000 downloads the
// last timed one again and again, both started before the first message
// and kept going until the last is delivered. Those transfers move
// ciphertext only: the bench process encrypts and decrypts nothing
// meanwhile, so the comparison is of the server and the transport.

// fileTarget is the goal: file throughput at least this fraction
// of the raw bulk stream's, each way.
const fileTarget = 0.6

// chatTarget is the goal: chat latency during a transfer at most
// this many times the latency without one.
const chatTarget = 2.0

// fileByteBurst is the byte_burst of paced transfers (-file-byte-rate):
// small, so that a transfer runs at the pace from its first MiB rather
// than after a default burst of 8 MiB (client TestBlobChatLatency too).
const fileByteBurst = 1 << 20

// fileLimits raise the server's blob bounds above anything the bench
// sends (the byte rate is already lifted by unlimited).
var fileLimits = []string{
	"--blob-max-size", strconv.Itoa(1 << 40),
	"--blob-quota", strconv.Itoa(1 << 50),
	"--blob-store-max-bytes", strconv.Itoa(1 << 50),
}

// fileStats is the file phase's outcome.
type fileStats struct {
	Bytes        int64  `json:"bytes"`         // the plaintext file
	EncodedBytes int64  `json:"encoded_bytes"` // its attachment encoding: what is uploaded, stored and downloaded
	Runs         int    `json:"runs"`
	ByteRate     int64  `json:"byte_rate,omitempty"` // -file-byte-rate: transfers paced at this many bytes/s per account
	TempFS       string `json:"temp_fs"`             // file system of the plaintext and temporary files (the homes')
	ServerData   string `json:"server_data_fs"`
	// Raw quic-go, SIZE bytes each way; securechat, the file's plaintext
	// bytes per second, encryption in Up and decryption in Down.
	RawUp       transferStats `json:"raw_up"`
	RawDown     transferStats `json:"raw_down"`
	Up          transferStats `json:"up"`
	Down        transferStats `json:"down"`
	UpRatio     float64       `json:"up_ratio"` // Up ÷ RawUp
	DownRatio   float64       `json:"down_ratio"`
	Target      float64       `json:"target"`
	MeetsTarget bool          `json:"meets_target"` // both ratios
	Chat        chatStats     `json:"chat"`
}

// transferStats is one kind of transfer, timed Runs times.
type transferStats struct {
	MiBPerSec float64   `json:"mib_per_s"` // the median run
	AllRuns   []float64 `json:"runs_mib_per_s"`
	Seconds   float64   `json:"s"` // the median run's time
	// CryptoS is the median run's time spent encrypting (up) or
	// decrypting (down) the file, included in Seconds; 0 for raw.
	CryptoS float64 `json:"crypto_s,omitempty"`
	// TransferMiBPerSec is the median run's rate without CryptoS: the
	// upload or download alone; 0 for raw.
	TransferMiBPerSec float64 `json:"transfer_mib_per_s,omitempty"`
	ServerCPUUtil     float64 `json:"server_cpu_util"` // the median run, fraction of one core
	BenchCPUUtil      float64 `json:"bench_cpu_util"`
	OtherCPUUtil      float64 `json:"other_cpu_util"` // the machine's other processes, -1: unknown
	StealUtil         float64 `json:"steal_util"`     // the hypervisor's steal (other guests), fraction of one core; -1: unknown
	// CPU time per MiB of the file over all runs: the server's and the
	// bench process's (raw: the bulk server and its client).
	ServerCPUMSPerMiB float64 `json:"server_cpu_ms_per_mib"`
	BenchCPUMSPerMiB  float64 `json:"bench_cpu_ms_per_mib"`
}

// chatStats is the chat latency without and during transfers.
type chatStats struct {
	Messages    int         `json:"messages"` // each way of measuring
	Quiet       chatLatency `json:"quiet"`
	Busy        chatLatency `json:"during_transfer"`
	P50Ratio    float64     `json:"p50_ratio"` // Busy ÷ Quiet
	P99Ratio    float64     `json:"p99_ratio"`
	Target      float64     `json:"target"`
	MeetsTarget bool        `json:"meets_target"` // both ratios
	// The transfers that ran during the busy messages: how many
	// completed, and the bytes per second each way meanwhile.
	Uploads       int     `json:"uploads"`
	Downloads     int     `json:"downloads"`
	UpMiBPerSec   float64 `json:"up_mib_per_s"`
	DownMiBPerSec float64 `json:"down_mib_per_s"`
}

// chatLatency is a send → deliver latency summary.
type chatLatency struct {
	P50MS        float64 `json:"p50_ms"`
	P99MS        float64 `json:"p99_ms"`
	MaxMS        float64 `json:"max_ms"`
	OtherCPUUtil float64 `json:"other_cpu_util"` // the machine's other processes meanwhile, -1: unknown
	StealUtil    float64 `json:"steal_util"`     // the hypervisor's steal meanwhile, -1: unknown
}

func filePhase(ctx context.Context, o *options, s *scratch, progress func(string, ...any)) (*fileStats, error) {
	st := &fileStats{Bytes: o.file, EncodedBytes: e2ee.AttachmentSize(o.file), Runs: o.fileRuns, Target: fileTarget}
	bsrv, baddr, bfp, err := startBaselineServer(ctx, o.stderr, bulkServerArg)
	if err != nil {
		return nil, fmt.Errorf("bulk baseline: %w", err)
	}
	defer bsrv.stop()
	raw, err := dialBulk(ctx, baddr, bfp)
	if err != nil {
		return nil, fmt.Errorf("bulk baseline: %w", err)
	}
	defer raw.close()
	data, err := s.subdir(o.serverData, "file-server")
	if err != nil {
		return nil, err
	}
	homes, err := s.subdir(o.homes, "file-homes")
	if err != nil {
		return nil, err
	}
	limits := fileLimits
	if o.fileByteRate > 0 {
		st.ByteRate = o.fileByteRate
		limits = append(slices.Clone(fileLimits), "--byte-rate", strconv.FormatInt(o.fileByteRate, 10), "--byte-burst", strconv.Itoa(fileByteBurst))
	}
	srv, addr, fp, err := startServer(ctx, o.bin, data, o.stderr, limits...)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	st.ServerData = describeFS(data)
	a, err := registerAccounts(ctx, homes, addr, fp, 2)
	if err != nil {
		return nil, err
	}
	defer a.close()
	plain := filepath.Join(homes, "file.plain")
	sum, err := writeRandomFile(plain, o.file)
	if err != nil {
		return nil, err
	}
	st.TempFS = describeFS(homes)
	up, err := client.Connect(ctx, a.senders[0], client.Options{})
	if err != nil {
		return nil, err
	}
	defer up.Close()
	down, err := client.Connect(ctx, a.receivers[0], client.Options{})
	if err != nil {
		return nil, err
	}
	defer down.Close()
	x := &fileTransfer{up: up, down: down, dir: homes, plain: plain, sum: sum,
		to: []chat.Device{chat.DeviceOf(down.Profile().User, down.Profile().Device)}}
	progress("file: %s (%s encoded) each way, %d times, each time raw quic-go then securechat; server data on %s, files on %s",
		fmtMiB(o.file), fmtMiB(st.EncodedBytes), o.fileRuns, st.ServerData, st.TempFS)
	if err := o.fileProf.start(srv, o.stderr); err != nil {
		return nil, err
	}
	defer o.fileProf.stop()
	// Raw and securechat alternate, so that both see the same moments of
	// a shared machine.
	var rawUps, rawDowns, ups, downs []timing
	var last client.BlobID
	for i := range o.fileRuns {
		r, err := timed(bsrv, func() (time.Duration, error) { return 0, raw.upload(ctx, o.file) })
		if err != nil {
			return nil, fmt.Errorf("bulk baseline: %w", err)
		}
		rawUps = append(rawUps, r)
		f, r, err := x.send(ctx, srv)
		if err != nil {
			return nil, fmt.Errorf("upload: %w", err)
		}
		ups = append(ups, r)
		if r, err = timed(bsrv, func() (time.Duration, error) { return 0, raw.download(ctx, o.file) }); err != nil {
			return nil, fmt.Errorf("bulk baseline: %w", err)
		}
		rawDowns = append(rawDowns, r)
		if r, err = x.receive(ctx, srv, f); err != nil {
			return nil, fmt.Errorf("download: %w", err)
		}
		downs = append(downs, r)
		if i < o.fileRuns-1 {
			if err := down.BlobDone(ctx, f.id); err != nil {
				return nil, err
			}
		}
		last = f.id
	}
	if err := o.fileProf.stop(); err != nil {
		return nil, err
	}
	raw.close()
	bsrv.stop()
	st.RawUp, st.RawDown = summarize(rawUps, o.file), summarize(rawDowns, o.file)
	st.Up, st.Down = summarize(ups, o.file), summarize(downs, o.file)
	st.UpRatio, st.DownRatio = st.Up.MiBPerSec/st.RawUp.MiBPerSec, st.Down.MiBPerSec/st.RawDown.MiBPerSec
	st.MeetsTarget = st.UpRatio >= fileTarget && st.DownRatio >= fileTarget

	progress("file: chat latency, %d messages without a transfer, then %d during transfers", o.fileMessages, o.fileMessages)
	if st.Chat, err = chatDuringTransfers(ctx, o, srv, a, x, last); err != nil {
		return nil, fmt.Errorf("chat during transfers: %w", err)
	}
	if err := down.BlobDone(ctx, last); err != nil {
		return nil, err
	}
	if done, perr := srv.exited(); done {
		return nil, perr
	}
	return st, nil
}

func fmtMiB(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// timing is one timed piece of work: its time, the part of it spent in
// cryptography, and the CPU time of the server, of the bench and of the
// machine's other processes, and the hypervisor's steal (-1: unknown)
// meanwhile.
type timing struct {
	wall, crypto, server, bench, other, steal time.Duration
}

// cpuMark is the CPU times a timing starts from.
type cpuMark struct {
	server, bench, all, steal time.Duration
}

func markCPU(srv *proc) (cpuMark, error) {
	s, err := procCPU(strconv.Itoa(srv.pid()))
	if err != nil {
		return cpuMark{}, err
	}
	b, err := selfCPU()
	return cpuMark{server: s, bench: b, all: machineCPU(), steal: machineSteal()}, err
}

// since is the timing of wall from m on.
func (m cpuMark) since(srv *proc, wall time.Duration) (timing, error) {
	n, err := markCPU(srv)
	if err != nil {
		return timing{}, err
	}
	t := timing{wall: wall, server: n.server - m.server, bench: n.bench - m.bench, other: -1, steal: -1}
	if m.steal >= 0 && n.steal >= m.steal {
		t.steal = n.steal - m.steal
	}
	if m.all >= 0 && n.all >= m.all {
		// The machine's ticks and the processes' are counted apart: an
		// idle machine can come out a tick below zero.
		t.other = max(0, n.all-m.all-t.server-t.bench)
	}
	return t, nil
}

// util is d as a fraction of one core over t, or -1 if unknown.
func (t timing) util(d time.Duration) float64 {
	if d < 0 {
		return -1
	}
	return d.Seconds() / t.wall.Seconds()
}

// timed runs fn and measures it.
func timed(srv *proc, fn func() (crypto time.Duration, err error)) (timing, error) {
	m, err := markCPU(srv)
	if err != nil {
		return timing{}, err
	}
	t0 := time.Now()
	crypto, err := fn()
	wall := time.Since(t0)
	if err != nil {
		return timing{}, err
	}
	t, err := m.since(srv, wall)
	t.crypto = crypto
	return t, err
}

// summarize is the median run of size bytes, and every run's rate.
func summarize(runs []timing, size int64) transferStats {
	rate := func(r timing) float64 { return float64(size) / (1 << 20) / r.wall.Seconds() }
	var st transferStats
	for _, r := range runs {
		st.AllRuns = append(st.AllRuns, rate(r))
	}
	sorted := slices.Clone(runs)
	slices.SortFunc(sorted, func(a, b timing) int { return cmp.Compare(a.wall, b.wall) })
	m := sorted[len(sorted)/2]
	st.MiBPerSec, st.Seconds, st.CryptoS = rate(m), m.wall.Seconds(), m.crypto.Seconds()
	if m.crypto > 0 {
		st.TransferMiBPerSec = float64(size) / (1 << 20) / (m.wall - m.crypto).Seconds()
	}
	st.ServerCPUUtil, st.BenchCPUUtil, st.OtherCPUUtil, st.StealUtil = m.util(m.server), m.util(m.bench), m.util(m.other), m.util(m.steal)
	var server, bench time.Duration
	for _, r := range runs {
		server, bench = server+r.server, bench+r.bench
	}
	mib := float64(size) / (1 << 20) * float64(len(runs))
	st.ServerCPUMSPerMiB, st.BenchCPUMSPerMiB = ms(server)/mib, ms(bench)/mib
	return st
}

// writeRandomFile writes size random bytes to path and returns their
// SHA-256.
func writeRandomFile(path string, size int64) ([sha256.Size]byte, error) {
	var seed [32]byte
	crand.Read(seed[:])
	f, err := os.Create(path)
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.NewChaCha8(seed), size); err != nil {
		return [sha256.Size]byte{}, err
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum, f.Close()
}

// fileTransfer is the file sender's and receiver's side of the phase.
type fileTransfer struct {
	up, down *client.Client
	to       []chat.Device // the receiver's device
	dir      string        // where the files go: the homes' file system
	plain    string        // the original file
	sum      [sha256.Size]byte
	cipher   string // the last encrypted file, uploaded again during the chat
}

// sent is an uploaded file and what its recipient needs to read it.
type sent struct {
	id          client.BlobID
	key, digest []byte
	size        int64 // of the encoding
}

// send encrypts the file into a temporary file and uploads it, timed.
func (x *fileTransfer) send(ctx context.Context, srv *proc) (*sent, timing, error) {
	var f sent
	if prev := x.cipher; prev != "" {
		defer os.Remove(prev) // once the next is sent
	}
	r, err := timed(srv, func() (time.Duration, error) {
		t0 := time.Now()
		name, key, digest, size, err := encryptFile(x.plain, x.dir)
		if err != nil {
			return 0, err
		}
		crypto := time.Since(t0)
		x.cipher = name
		f.key, f.digest, f.size = key, digest, size
		c, err := os.Open(name)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		f.id, err = x.up.Upload(ctx, c, size, x.to, nil)
		return crypto, err
	})
	return &f, r, err
}

// encryptFile encrypts the file at plain under a new key into a new
// temporary file in dir.
func encryptFile(plain, dir string) (name string, key, digest []byte, size int64, err error) {
	in, err := os.Open(plain)
	if err != nil {
		return "", nil, nil, 0, err
	}
	defer in.Close()
	out, err := os.CreateTemp(dir, "file-*.enc")
	if err != nil {
		return "", nil, nil, 0, err
	}
	defer out.Close()
	if key, err = e2ee.NewAttachmentKey(nil); err != nil {
		return "", nil, nil, 0, err
	}
	bw := bufio.NewWriterSize(out, 256<<10)
	aw, err := e2ee.NewAttachmentWriter(bw, key, nil)
	if err != nil {
		return "", nil, nil, 0, err
	}
	if _, err := io.Copy(aw, in); err != nil {
		return "", nil, nil, 0, err
	}
	if err := aw.Close(); err != nil {
		return "", nil, nil, 0, err
	}
	if err := bw.Flush(); err != nil {
		return "", nil, nil, 0, err
	}
	return out.Name(), key, aw.Digest(), aw.Size(), out.Close()
}

// receive downloads f into a temporary file and decrypts it into another,
// timed; then checks the plaintext against the original.
func (x *fileTransfer) receive(ctx context.Context, srv *proc, f *sent) (timing, error) {
	enc, err := os.CreateTemp(x.dir, "download-*.enc")
	if err != nil {
		return timing{}, err
	}
	defer os.Remove(enc.Name())
	defer enc.Close()
	out, err := os.CreateTemp(x.dir, "download-*.plain")
	if err != nil {
		return timing{}, err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	r, err := timed(srv, func() (time.Duration, error) {
		n, err := x.down.Download(ctx, f.id, enc, 0, nil)
		if err != nil {
			return 0, err
		}
		if n != f.size {
			return 0, fmt.Errorf("the server has %d bytes, %d were sent", n, f.size)
		}
		t0 := time.Now()
		if _, err := enc.Seek(0, io.SeekStart); err != nil {
			return 0, err
		}
		ar, err := e2ee.NewAttachmentReader(bufio.NewReaderSize(enc, 256<<10), f.key, f.digest)
		if err != nil {
			return 0, err
		}
		if _, err := io.Copy(out, ar); err != nil {
			return 0, fmt.Errorf("decrypt: %w", err)
		}
		return time.Since(t0), nil
	})
	if err != nil {
		return timing{}, err
	}
	if _, err := out.Seek(0, io.SeekStart); err != nil {
		return timing{}, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, out); err != nil {
		return timing{}, err
	}
	if !bytes.Equal(h.Sum(nil), x.sum[:]) {
		return timing{}, errors.New("the received file differs from the one sent")
	}
	return r, nil
}

// chatDuringTransfers measures the chat latency without and during
// transfers; busyDown is a complete file the receiver downloads again and
// again meanwhile.
func chatDuringTransfers(ctx context.Context, o *options, srv *proc, a *accounts, x *fileTransfer, busyDown client.BlobID) (chatStats, error) {
	st := chatStats{Messages: o.fileMessages, Target: chatTarget}
	from, to := senderName(1), receiverName(1)
	rc, err := client.Connect(ctx, a.receivers[1], client.Options{Receive: true})
	if err != nil {
		return st, err
	}
	defer rc.Close()
	if _, _, err := handshake(ctx, a.senders[1], from, rc, to); err != nil {
		return st, fmt.Errorf("start session %s → %s: %w", from, to, err)
	}
	sc, err := client.Connect(ctx, a.senders[1], client.Options{})
	if err != nil {
		return st, err
	}
	defer sc.Close()

	ctx, fail := newFailure(ctx)
	defer fail.cancel(nil)
	delivered := make(chan time.Duration)
	var recv sync.WaitGroup
	recv.Go(func() { deliverLatencies(ctx, rc, from, delivered, fail) })
	defer func() {
		rc.Close() // ends the receiver's events
		recv.Wait()
	}()
	// messages sends n texts and summarizes their latencies; wall is
	// their time.
	messages := func(n int) (l chatLatency, wall time.Duration, err error) {
		m, err := markCPU(srv)
		if err != nil {
			return l, 0, err
		}
		t0 := time.Now()
		lat := make([]time.Duration, 0, n)
		for range n {
			if _, err := sc.SendText(ctx, to, o.text(now())); err != nil {
				return l, 0, err
			}
			select {
			case d := <-delivered:
				lat = append(lat, d)
			case <-ctx.Done():
				return l, 0, context.Cause(ctx)
			}
		}
		wall = time.Since(t0)
		t, err := m.since(srv, wall)
		var s samples
		s.add(lat)
		sum := s.summary()
		return chatLatency{P50MS: ms(sum.P50), P99MS: ms(sum.P99), MaxMS: ms(sum.Max), OtherCPUUtil: t.util(t.other), StealUtil: t.util(t.steal)}, wall, err
	}
	if _, _, err := messages(3); err != nil { // warm-up
		return st, err
	}
	if st.Quiet, _, err = messages(o.fileMessages); err != nil {
		return st, err
	}

	cipher, err := os.Open(x.cipher)
	if err != nil {
		return st, err
	}
	defer cipher.Close()
	fi, err := cipher.Stat()
	if err != nil {
		return st, err
	}
	var stopping stopFlag
	var upBytes, downBytes atomic.Int64
	var uploads, downloads atomic.Int32
	var transfers sync.WaitGroup
	transfers.Go(func() {
		for !stopping.isSet() {
			var last int64
			_, err := x.up.Upload(ctx, cipher, fi.Size(), x.to, func(done, _ int64) { upBytes.Add(done - last); last = done })
			if err != nil {
				fail.report(fmt.Errorf("upload: %w", err))
				return
			}
			uploads.Add(1)
		}
	})
	transfers.Go(func() {
		for !stopping.isSet() {
			var last int64
			_, err := x.down.Download(ctx, busyDown, io.Discard, 0, func(done, _ int64) { downBytes.Add(done - last); last = done })
			if err != nil {
				fail.report(fmt.Errorf("download: %w", err))
				return
			}
			downloads.Add(1)
		}
	})
	// Both transfers must be under way before the first message.
	for upBytes.Load() == 0 || downBytes.Load() == 0 {
		if ctx.Err() != nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	u0, d0, nu0, nd0 := upBytes.Load(), downBytes.Load(), uploads.Load(), downloads.Load()
	var wall time.Duration
	st.Busy, wall, err = messages(o.fileMessages)
	u1, d1, nu1, nd1 := upBytes.Load(), downBytes.Load(), uploads.Load(), downloads.Load()
	stopping.set()
	transfers.Wait()
	if err == nil {
		err = fail.err()
	}
	if err != nil {
		return st, err
	}
	st.P50Ratio, st.P99Ratio = st.Busy.P50MS/st.Quiet.P50MS, st.Busy.P99MS/st.Quiet.P99MS
	st.MeetsTarget = st.P50Ratio <= chatTarget && st.P99Ratio <= chatTarget
	st.Uploads, st.Downloads = int(nu1-nu0), int(nd1-nd0)
	st.UpMiBPerSec, st.DownMiBPerSec = float64(u1-u0)/(1<<20)/wall.Seconds(), float64(d1-d0)/(1<<20)/wall.Seconds()
	return st, nil
}

// deliverLatencies reads rc's events until they end, acks every message
// and hands on its send → deliver latency. After a failure it only drains
// them, so that the engine is never blocked on its event stream.
func deliverLatencies(ctx context.Context, rc *client.Client, from string, out chan<- time.Duration, fail *failure) {
	failed := false
	for ev := range rc.Events() {
		switch {
		case failed:
		case ev.Type == client.EventMessage:
			t1 := now()
			m := ev.Message
			t0, err := sentAt(m.Text)
			if err != nil || m.From.User != from || m.Kind != chat.KindText {
				fail.report(fmt.Errorf("%s got an unexpected message from %s: %.40q", rc.Profile().User, m.From, m.Text))
				failed = true
				continue
			}
			if err := rc.Ack(m); err != nil {
				fail.report(fmt.Errorf("%s: ack: %w", rc.Profile().User, err))
				failed = true
				continue
			}
			select {
			case out <- t1 - t0:
			case <-ctx.Done():
				failed = true
			}
		case ev.Type == client.EventClosed:
			if ctx.Err() == nil {
				fail.report(fmt.Errorf("%s: %w", rc.Profile().User, ev.Err))
			}
		}
	}
}
