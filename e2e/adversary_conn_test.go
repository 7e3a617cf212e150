package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/securechat/securechat/client"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/transport"
)

// Adversarial tests of issue 17 points 1, 2 and 5 against the real
// binary: wire-level clients that authenticate as a real account (its
// device key from the home that `client.Register` made) and then send
// frames no honest client sends. Memory bounds compare the server
// process with itself earlier in the same run.

// procStatus reads a field of /proc/PID/status in bytes (VmRSS, RssAnon).
func procStatus(t *testing.T, s *server, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, field+":"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), &kb)
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/PID/status", field)
	return 0
}

// metric scrapes one value of the admin's /metrics.
func metric(t *testing.T, s *server, name string) float64 {
	t.Helper()
	token, _ := os.ReadFile(filepath.Join(s.data, "admin.token"))
	req, _ := http.NewRequest("GET", "http://"+adminAddr(t, s)+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == name {
			var v float64
			fmt.Sscan(f[1], &v)
			return v
		}
	}
	t.Fatalf("metric %s missing", name)
	return 0
}

const mib = 1 << 20

// rawDial opens a wire-level connection to s.
func rawDial(t *testing.T, s *server) *transport.Conn {
	t.Helper()
	fp, _ := transport.ParseFingerprint(s.FP)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, s.Addr, &transport.Pinner{Pin: fp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(transport.CloseNormal, "") })
	return c
}

// rawAuth opens a wire-level connection authenticated as h's device, the
// way client.Connect does it (protocol.md §5.2).
func rawAuth(t *testing.T, s *server, h *home.Home, receive bool) *transport.Conn {
	t.Helper()
	prof, err := h.Profile()
	if err != nil {
		t.Fatal(err)
	}
	c := rawDial(t, s)
	exp, err := c.Exporter()
	if err != nil {
		t.Fatal(err)
	}
	sig := ed25519.Sign(prof.DeviceKey, transport.AuthTranscript(transport.CodeAuth, exp, prof.User, prof.Device))
	if err := c.WriteFrame(transport.CodeAuth, 1, &transport.Auth{User: prof.User, Device: prof.Device, Signature: sig, Receive: receive}); err != nil {
		t.Fatal(err)
	}
	f, err := c.ReadFrame()
	if err != nil || f.Code != transport.CodeWelcome {
		t.Fatalf("auth as %s: %v %s", prof.User, f.Code, err)
	}
	return c
}

// publish connects h once with the real client, which publishes its keys:
// a device without published keys is no recipient.
func publish(t *testing.T, h *home.Home) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Connect(ctx, h, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// closedWithCode waits, without reading (reading would let a blocked
// write through), for the server to close c, then reads c to its end and
// returns how the server closed it.
func closedWithCode(t *testing.T, c *transport.Conn, within time.Duration) *transport.ClosedError {
	t.Helper()
	select {
	case <-c.Context().Done():
	case <-time.After(within):
		t.Fatalf("connection still open after %v", within)
	}
	done := make(chan error, 1)
	go func() {
		for {
			if _, err := c.ReadFrame(); err != nil {
				done <- err
				return
			}
		}
	}()
	select {
	case err := <-done:
		var ce *transport.ClosedError
		if !errors.As(err, &ce) {
			t.Fatalf("connection ended with %v, not closed by the server", err)
		}
		return ce
	case <-time.After(within):
		t.Fatalf("connection still open after %v", within)
		return nil
	}
}

// TestHalfSentFrames (issue 17 point 1): authenticated connections that
// declare 4 MiB frames and send only a header and a little of the body do
// not make the server hold what they declared, and are closed after
// frame_timeout; before authentication a frame over 4 KiB is refused from
// its length prefix. Before the fix, 25 such connections held +103 MiB of
// heap; the bound here is a quarter of what the declared lengths would
// pin.
func TestHalfSentFrames(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--frame-timeout", "3s")
	mallory := account(t, s, "mallory")
	const n, sent = 25, 16 << 10
	conns := make([]*transport.Conn, n)
	for i := range conns {
		conns[i] = rawAuth(t, s, mallory, false)
	}
	time.Sleep(500 * time.Millisecond)
	rss0, heap0 := procStatus(t, s, "RssAnon"), metric(t, s, "go_memstats_heap_inuse_bytes")
	for _, c := range conns {
		hdr := binary.BigEndian.AppendUint32(nil, transport.DefaultMaxFrame)
		hdr = append(hdr, transport.Version, 0, byte(transport.CodeSend), 0, 0, 0, 9)
		if err := c.WriteRaw(append(hdr, make([]byte, sent)...)); err != nil {
			t.Fatal(err)
		}
	}
	// Before authentication: refused from the prefix, whatever it declares.
	pre := rawDial(t, s)
	pre.WriteRaw(binary.BigEndian.AppendUint32(nil, transport.DefaultMaxFrame))
	if ce := closedWithCode(t, pre, 20*time.Second); ce.Code != transport.CloseProtocol || !strings.Contains(ce.Reason, "exceeds the limit of 4096") {
		t.Errorf("4 MiB frame before authentication: closed with %d %q", ce.Code, ce.Reason)
	}
	time.Sleep(time.Second)
	rss1, heap1 := procStatus(t, s, "RssAnon"), metric(t, s, "go_memstats_heap_inuse_bytes")
	bound := int64(n * transport.DefaultMaxFrame / 4)
	t.Logf("%d connections × a %d MiB frame with %d KiB sent: anonymous RSS %+.1f MiB, heap in use %+.1f MiB (bound %d MiB)",
		n, transport.DefaultMaxFrame/mib, sent>>10, float64(rss1-rss0)/mib, (heap1-heap0)/mib, bound/mib)
	if rss1-rss0 > bound {
		t.Errorf("anonymous RSS grew %d MiB with %d half-sent frames, bound %d MiB", (rss1-rss0)/mib, n, bound/mib)
	}
	if int64(heap1-heap0) > bound {
		t.Errorf("heap in use grew %d MiB with %d half-sent frames, bound %d MiB", int64(heap1-heap0)/mib, n, bound/mib)
	}
	// frame_timeout: every one of them is closed as a protocol error.
	for i, c := range conns {
		if ce := closedWithCode(t, c, 20*time.Second); ce.Code != transport.CloseProtocol || !strings.Contains(ce.Reason, "not completed") {
			t.Errorf("connection %d: closed with %d %q, want a protocol close for an incomplete frame", i, ce.Code, ce.Reason)
		}
	}
	s.alive()
}

// TestConnectionCaps (issue 17 point 1): max_conns_per_address and
// max_conns_per_account refuse connections past them with close code 8,
// and a closed connection frees its place.
func TestConnectionCaps(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--max-conns-per-address", "6", "--max-conns-per-account", "3")
	mallory := account(t, s, "mallory")
	// The registration's connection must be gone before counting starts.
	waitFor(t, "the registration's connection gone", func() bool { return metric(t, s, "securechat_connections") == 0 })
	var conns []*transport.Conn
	for range 3 {
		conns = append(conns, rawAuth(t, s, mallory, false))
	}
	// A fourth connection of the account: refused at its Auth.
	c := rawDial(t, s)
	prof, _ := mallory.Profile()
	exp, _ := c.Exporter()
	c.WriteFrame(transport.CodeAuth, 1, &transport.Auth{User: prof.User, Device: prof.Device, Signature: ed25519.Sign(prof.DeviceKey, transport.AuthTranscript(transport.CodeAuth, exp, prof.User, prof.Device))})
	if ce := closedWithCode(t, c, 20*time.Second); ce.Code != transport.CloseLimit || !strings.Contains(ce.Reason, "this account") {
		t.Errorf("fourth connection of the account: closed with %d %q", ce.Code, ce.Reason)
	}
	// The refused one must have left before the address's count goes on.
	waitFor(t, "the refused connection gone", func() bool { return metric(t, s, "securechat_connections") <= 3 })
	// Three more unauthenticated ones fill the address's 6; the 7th is closed.
	conns = append(conns, rawDial(t, s), rawDial(t, s), rawDial(t, s))
	for _, c := range conns[3:] {
		c.WriteFrame(transport.CodePing, 1, &transport.Empty{})
		c.ReadFrame()
	}
	seventh := rawDial(t, s)
	seventh.WriteFrame(transport.CodePing, 1, &transport.Empty{})
	if ce := closedWithCode(t, seventh, 20*time.Second); ce.Code != transport.CloseLimit || !strings.Contains(ce.Reason, "your address") {
		t.Errorf("seventh connection from one address: closed with %d %q", ce.Code, ce.Reason)
	}
	conns[0].Close(transport.CloseNormal, "")
	waitFor(t, "a place freed", func() bool { return metric(t, s, "securechat_connections") <= 5 })
	rawAuth(t, s, mallory, false) // the freed place of the account and the address
}

// TestNonReadingReceiver (issue 17 point 2): a device that authenticates
// to receive and then never reads, with a backlog of 200 × 250 KiB and a
// storm of signals and new messages, stays within its push budget (the
// server's anonymous RSS and its goroutines), is disconnected after
// write_timeout, and loses nothing: it gets every message when it comes
// back. Before the fix the backlog alone held +52 MiB, and each signal was
// a goroutine waiting forever.
func TestNonReadingReceiver(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--write-timeout", "3s", "--push-budget", "1048576",
		"--message-rate", "1e6", "--message-burst", "1000000", "--byte-rate", "1e12", "--byte-burst", "1000000000000")
	alice, bob := account(t, s, "alice"), account(t, s, "bob")
	publish(t, alice)
	publish(t, bob)
	bobProf, err := bob.Profile()
	if err != nil {
		t.Fatal(err)
	}
	bobKey := bobProf.DeviceKey.Public().(ed25519.PublicKey)
	ac := rawAuth(t, s, alice, false)
	var mu sync.Mutex
	answers := map[transport.Code]int{}
	go func() {
		for {
			f, err := ac.ReadFrame()
			if err != nil {
				return
			}
			mu.Lock()
			answers[f.Code]++
			mu.Unlock()
		}
	}()
	answered := func() int {
		mu.Lock()
		defer mu.Unlock()
		return answers[transport.CodeSent] + answers[transport.CodeError]
	}
	id := uint32(1)
	send := func(count, size int, ephemeral bool) {
		t.Helper()
		want := answered() + count
		for range count {
			mid := make([]byte, transport.MessageIDLen)
			rand.Read(mid)
			payload := make([]byte, size)
			rand.Read(payload)
			id++
			if err := ac.WriteFrame(transport.CodeSend, id, &transport.Send{MessageID: mid, Ephemeral: ephemeral,
				Envelopes: []transport.Envelope{{User: "bob", Device: 1, DeviceKey: bobKey, Payload: payload}}}); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, "answers to the sends", func() bool { return answered() >= want })
	}
	const backlog, size = 200, 250 << 10
	send(backlog, size, false)
	if answers[transport.CodeError] != 0 {
		t.Fatalf("%d sends refused", answers[transport.CodeError])
	}
	time.Sleep(time.Second)
	rss0, g0 := procStatus(t, s, "RssAnon"), metric(t, s, "go_goroutines")

	bc := rawAuth(t, s, bob, true) // and never read
	start := time.Now()
	time.Sleep(500 * time.Millisecond)
	const storm, more = 300, 20
	send(storm, 1<<10, true) // typing signals
	send(more, size, false)  // offered while bob is stuck
	rss1, g1 := procStatus(t, s, "RssAnon"), metric(t, s, "go_goroutines")
	dropped := metric(t, s, "securechat_signals_dropped_total")
	bound := int64(32 * mib)
	t.Logf("non-reading receiver, %d × %d KiB backlog, %d signals, %d more: anonymous RSS %+.1f MiB (bound %d MiB), goroutines %+.0f, %.0f signals dropped",
		backlog, size>>10, storm, more, float64(rss1-rss0)/mib, bound/mib, g1-g0, dropped)
	if rss1-rss0 > bound {
		t.Errorf("anonymous RSS grew %d MiB for a receiver that does not read, bound %d MiB", (rss1-rss0)/mib, bound/mib)
	}
	if g1-g0 > 50 {
		t.Errorf("goroutines grew by %.0f with %d signals to a device that does not read", g1-g0, storm)
	}
	if dropped == 0 {
		t.Error("no signal dropped for a device that does not read")
	}
	ce := closedWithCode(t, bc, 30*time.Second)
	if ce.Code != transport.CloseLimit || !strings.Contains(ce.Reason, "did not read") {
		t.Errorf("non-reading receiver closed with %d %q", ce.Code, ce.Reason)
	}
	t.Logf("disconnected %v after it stopped reading", time.Since(start).Round(100*time.Millisecond))
	// Nothing lost: back and reading, bob gets every stored message.
	bc = rawAuth(t, s, bob, true)
	got := 0
	for got < backlog+more {
		f, err := bc.ReadFrame()
		if err != nil {
			t.Fatalf("after %d of %d messages: %v", got, backlog+more, err)
		}
		if f.Code == transport.CodeDeliver {
			got++
		}
	}
	s.alive()
}

// TestRequestFloods (issue 17 point 5): PublishKeys, Ack, Devices and
// Identity floods from one account are throttled with rate-limited
// errors, counted in securechat_rate_limited_total, and another account
// is not affected.
func TestRequestFloods(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--publish-keys-rate", "0.1", "--publish-keys-burst", "5",
		"--ack-rate", "1", "--ack-burst", "4096", "--lookup-rate", "0.1", "--lookup-burst", "10")
	mallory, carol := account(t, s, "mallory"), account(t, s, "carol")
	c := rawAuth(t, s, mallory, false)
	limited0 := metric(t, s, "securechat_rate_limited_total")
	seqs := make([]uint64, transport.MaxAcks)
	for i := range seqs {
		seqs[i] = uint64(i + 1)
	}
	const flood = 40
	bodies := map[transport.Code]transport.Marshaler{
		transport.CodePublishKeys: &transport.PublishKeys{Identity: make([]byte, transport.IdentityKeyLen), Certificate: []byte{1}, SignedPreKey: []byte{1}, LastResortKEM: []byte{1}},
		transport.CodeAck:         &transport.Ack{Seqs: seqs},
		transport.CodeDevices:     &transport.DevicesRequest{User: "carol"},
		transport.CodeIdentity:    &transport.DevicesRequest{User: "carol"},
	}
	limited := map[transport.Code]int{}
	id := uint32(1)
	for _, code := range []transport.Code{transport.CodePublishKeys, transport.CodeAck, transport.CodeDevices, transport.CodeIdentity} {
		for range flood {
			id++
			if err := c.WriteFrame(code, id, bodies[code]); err != nil {
				t.Fatal(err)
			}
			f, err := c.ReadFrame()
			if err != nil {
				t.Fatalf("%v flood: %v", code, err)
			}
			var e transport.Error
			if f.Code == transport.CodeError && transport.Unmarshal(f.Body, &e) == nil && e.Code == transport.ErrRateLimited {
				if e.RetryAfterMS == 0 || !strings.Contains(e.Message, "rate limited") {
					t.Errorf("%v refusal: %+v", code, e)
				}
				limited[code]++
			}
		}
	}
	t.Logf("rate-limited answers of %d each: %v", flood, limited)
	for code, min := range map[transport.Code]int{
		transport.CodePublishKeys: flood - 5 - 1,
		transport.CodeAck:         flood - 1 - 1,
		transport.CodeDevices:     flood - 10 - 1,
		transport.CodeIdentity:    flood - 1, // the lookups share one bucket
	} {
		if limited[code] < min {
			t.Errorf("%v flood: %d of %d rate limited, want at least %d", code, limited[code], flood, min)
		}
	}
	total := limited[transport.CodePublishKeys] + limited[transport.CodeAck] + limited[transport.CodeDevices] + limited[transport.CodeIdentity]
	if got := metric(t, s, "securechat_rate_limited_total") - limited0; int(got) < total {
		t.Errorf("securechat_rate_limited_total rose by %.0f, %d refusals seen", got, total)
	}
	// Per account: carol is not throttled by mallory's flood.
	cc := rawAuth(t, s, carol, false)
	cc.WriteFrame(transport.CodeDevices, 2, &transport.DevicesRequest{User: "mallory"})
	if f, err := cc.ReadFrame(); err != nil || f.Code != transport.CodeDeviceList {
		t.Errorf("carol's lookup after mallory's flood: %v %v", f.Code, err)
	}
}
