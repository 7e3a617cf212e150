package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/securechat/securechat/client"
	"github.com/securechat/securechat/transport"
)

// Adversarial tests of the store's side of the server (issue 17 points 6–8
// and the protocol review's follow-ups), against the real binary.

// backupDownload is a download of the admin API's backup over a TCP
// connection with a small receive buffer: it reads the response header,
// reads nothing for stall, then reads the body at rate bytes a second (0:
// as fast as it comes).
type backupDownload struct {
	read atomic.Int64
	done chan error // the download's end: nil for a complete body
}

func startBackup(t *testing.T, s *server, stall time.Duration, rate int) *backupDownload {
	t.Helper()
	token, err := os.ReadFile(filepath.Join(s.data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	addr := adminAddr(t, s)
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /api/backup HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n", addr, strings.TrimSpace(string(token)))
	b := &backupDownload{done: make(chan error, 1)}
	quit := make(chan struct{})
	t.Cleanup(func() { close(quit); conn.Close() })
	go func() {
		resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 1024), nil)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("backup: %s", resp.Status)
		}
		if err != nil {
			b.done <- err
			return
		}
		select {
		case <-time.After(stall):
		case <-quit:
			return
		}
		buf := make([]byte, 32<<10)
		var tick <-chan time.Time
		if rate > 0 {
			buf = buf[:rate/10]
			tk := time.NewTicker(100 * time.Millisecond)
			defer tk.Stop()
			tick = tk.C
		}
		for {
			n, err := resp.Body.Read(buf)
			b.read.Add(int64(n))
			if err == io.EOF {
				b.done <- nil // a complete body; a cut one reads as an unexpected EOF
				return
			}
			if err != nil {
				b.done <- err
				return
			}
			if tick != nil {
				select {
				case <-tick:
				case <-quit:
					return
				}
			}
		}
	}()
	return b
}

// TestSlowBackupDoesNotStallSends: a backup downloaded at 10 KiB/s holds
// no store transaction, so sends that grow the store (and make bbolt remap
// its file, which waits for every read transaction) go on at the pace they
// had without the download: the median send latency with the download
// stays within a few times the median without it, in the same run. Before
// the fix the download's read transaction lasted the whole transfer, the
// first send that grew the mapping waited for it, and every other
// transaction waited behind that one. A download that stops reading is
// cut off after admin_write_timeout.
func TestSlowBackupDoesNotStallSends(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--message-rate", "1000", "--message-burst", "10000", "--byte-rate", "1e12", "--byte-burst", "1099511627776",
		"--admin-write-timeout", "4s")
	alice := account(t, s, "alice")
	account(t, s, "bob")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := client.Connect(ctx, alice, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	text := func() string {
		b := make([]byte, 24<<10)
		rand.Read(b)
		return hex.EncodeToString(b) // 48 KiB
	}
	// send sends n messages of 48 KiB and returns their latencies; a send
	// that takes more than 20 s is a stall.
	send := func(n int) []time.Duration {
		var out []time.Duration
		for i := range n {
			sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
			start := time.Now()
			_, err := c.SendText(sctx, "bob", text())
			scancel()
			if err != nil {
				t.Fatalf("send %d of %d: %v (after %v)", i+1, n, err, time.Since(start))
			}
			out = append(out, time.Since(start))
		}
		return out
	}
	send(120) // a store of about 6 MiB: the download outlasts the sends below
	before := send(30)
	dbSize := func() int64 {
		st, err := os.Stat(filepath.Join(s.data, "server.db"))
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	size := dbSize()

	started := time.Now()
	slow := startBackup(t, s, 0, 10<<10)
	waitFor(t, "the slow download to start", func() bool { return slow.read.Load() > 0 })
	// Send until the file (the size of bbolt's mapping) has grown, and a
	// few more: the mapping had to grow during the download.
	var during []time.Duration
	for dbSize() == size && len(during) < 1000 {
		during = append(during, send(10)...)
	}
	if dbSize() == size {
		t.Fatalf("the store stayed at %d bytes after %d sends: the test did not make it remap", size, len(during))
	}
	during = append(during, send(20)...)
	select {
	case err := <-slow.done:
		t.Fatalf("the slow download ended during the sends (%v, %d bytes): the test measured nothing", err, slow.read.Load())
	default:
	}
	p50 := func(d []time.Duration) time.Duration {
		d = slices.Clone(d)
		slices.Sort(d)
		return d[len(d)/2]
	}
	ratio := float64(p50(during)) / float64(p50(before))
	t.Logf("store %d → %d bytes; send p50 %v without the download, %v with it (×%.1f), max %v; the download read %d bytes meanwhile",
		size, dbSize(), p50(before), p50(during), ratio, slices.Max(during), slow.read.Load())
	if ratio > 5 {
		t.Errorf("a 10 KiB/s backup download slowed the median send ×%.1f", ratio)
	}
	// A stall is the send waiting for the download (minutes at 10 KiB/s);
	// one slow send while bbolt remaps the grown file under load is not
	// (400 ms, ×55, was seen on a loaded machine).
	if r := float64(slices.Max(during)) / float64(slices.Max(before)); r > 500 {
		t.Errorf("a 10 KiB/s backup download stalled a send for %v, ×%.0f the slowest send without it", slices.Max(during), r)
	}
	// The slow download keeps going past twice the write timeout: only a
	// stall is cut off.
	select {
	case err := <-slow.done:
		t.Errorf("the 10 KiB/s download ended after %d bytes: %v", slow.read.Load(), err)
	case <-time.After(time.Until(started.Add(8 * time.Second))):
	}
}

// TestStalledBackupCutOff: a download that stops reading is ended by the
// server after admin_write_timeout (its handler and connection freed),
// not held until the client comes back: when it reads again it finds the
// body cut short. Before the fix the admin listener had no write deadline.
func TestStalledBackupCutOff(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--admin-write-timeout", "1s", "--byte-rate", "1e12", "--byte-burst", "1099511627776")
	alice := account(t, s, "alice")
	account(t, s, "bob")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := client.Connect(ctx, alice, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 60 { // about 3 MiB, more than the socket buffers hold
		b := make([]byte, 24<<10)
		rand.Read(b)
		if _, err := c.SendText(ctx, "bob", hex.EncodeToString(b)); err != nil {
			t.Fatal(err)
		}
	}
	b := startBackup(t, s, 3*time.Second, 0) // three times the write timeout without reading
	select {
	case err := <-b.done:
		if err == nil {
			t.Errorf("a download that stalled for 3 s got the whole backup (%d bytes): no write timeout", b.read.Load())
		} else {
			t.Logf("stalled download cut off after %d bytes: %v", b.read.Load(), err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the stalled download neither ended nor completed")
	}
}

// TestRequestIDZero: a request with id 0 would run with nobody to answer
// (a FetchKeys taking one-time prekeys nobody receives, a Register or Auth
// authenticating silently), so the server closes the connection with the
// protocol close code for every code but Ack and Send, the notifications
// of protocol.md §3.3.
func TestRequestIDZero(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	fp, err := transport.ParseFingerprint(s.FP)
	if err != nil {
		t.Fatal(err)
	}
	dial := func(t *testing.T) *transport.Conn {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := transport.Dial(ctx, s.Addr, &transport.Pinner{Pin: fp})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(transport.CloseNormal, "") })
		return c
	}
	for _, code := range []transport.Code{transport.CodePing, transport.CodeRegister, transport.CodeLogin, transport.CodeAuth, transport.CodeFetchKeys, transport.CodeDevices, 999} {
		t.Run(code.String(), func(t *testing.T) {
			c := dial(t)
			c.WriteFrames(transport.Frame{Code: code, ID: 0, Body: []byte{0xff}})
			for {
				_, err := c.ReadFrame()
				if err == nil {
					continue
				}
				var ce *transport.ClosedError
				if !errors.As(err, &ce) || ce.Code != transport.CloseProtocol || !strings.Contains(ce.Reason, "request id 0") {
					t.Fatalf("connection ended with %v, want a protocol close naming request id 0", err)
				}
				return
			}
		})
	}
	// Ack and Send stay notifications: before authentication they are
	// refused with no answer, and the connection carries on.
	c := dial(t)
	c.WriteFrame(transport.CodeAck, 0, &transport.Ack{Seqs: []uint64{1}})
	c.WriteFrame(transport.CodeSend, 0, &transport.Send{MessageID: make([]byte, 16)})
	c.WriteFrame(transport.CodePing, 5, &transport.Empty{})
	f, err := c.ReadFrame()
	if err != nil || f.Code != transport.CodeOK || f.ID != 5 {
		t.Fatalf("ping after notifications: %v %v", f, err)
	}
}

// TestFullMailbox: past mailbox_max_entries a Send is refused and the
// sender is told whose mailbox is full, in one line; once the recipient
// has read (and acked) its messages, sending works again.
func TestFullMailbox(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--mailbox-max-entries", "3")
	alice, bob := register(t, s, "alice"), register(t, s, "bob")
	for i := range 3 {
		alice.send(t, "bob", fmt.Sprintf("message %d", i+1))
	}
	fails(t, 1, "bob's mailbox is full", nil, "send", "--home", alice.home, "--to", "bob", "one too many")
	if got := bob.recv(t, "0s"); len(got) != 3 {
		t.Fatalf("bob got %q, want the 3 stored messages", texts(got))
	}
	waitFor(t, "room in bob's mailbox", func() bool {
		return run(t, nil, "", "send", "--home", alice.home, "--to", "bob", "after bob read").Code == 0
	})
	if got := bob.recv(t, "0s"); len(got) != 1 || got[0].Text != "after bob read" {
		t.Errorf("bob got %q after reading", texts(got))
	}
}
