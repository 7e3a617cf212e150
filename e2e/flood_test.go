package e2e

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/securechat/securechat/client"
	"github.com/securechat/securechat/transport"
)

// flooder homes and the clients below use the engine in-process against
// the real server binary; only the flooder connects from 127.0.0.2.
func account(t *testing.T, s *server, name string) *client.Home {
	t.Helper()
	h, err := client.OpenHome(filepath.Join(t.TempDir(), name), client.HomeOptions{
		Passphrase: passphrase, Create: true, KDF: client.KDFParams{Time: 1, MemoryK: 64, Threads: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	fp, _ := transport.ParseFingerprint(s.FP)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := client.Register(ctx, h, client.EnrollOptions{Server: s.Addr, User: name, Password: password, Pin: fp}); err != nil {
		t.Fatalf("register %s: %v", name, err)
	}
	return h
}

// TestFlood: one client on 127.0.0.2 sends at 100× its message limit while
// 20 clients on 127.0.0.1 send 1 message a second. The legitimate clients
// lose nothing and their send→deliver p99 stays under 250 ms; the flooder
// is throttled, then banned (flood_ban).
func TestFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("flood test in -short mode")
	}
	s := startServer(t, "--message-rate", "2", "--message-burst", "4", "--flood-ban", "100",
		"--register-burst", "100", "--conn-burst", "200", "--login-ban", "1h")
	const legit, rounds = 20, 5
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The receiver of everything, and its latency book.
	sink := account(t, s, "sink")
	senders := make([]*client.Home, legit)
	for i := range senders {
		senders[i] = account(t, s, fmt.Sprintf("legit%02d", i))
	}
	flooderHome := account(t, s, "flooder")

	rc, err := client.Connect(ctx, sink, client.Options{Receive: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var mu sync.Mutex
	sentAt := map[string]time.Time{}
	var latencies []time.Duration
	got := map[string]int{}
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		for ev := range rc.Events() {
			if ev.Type != client.EventMessage || !strings.HasPrefix(ev.Message.Text, "legit") {
				if ev.Type == client.EventMessage {
					rc.Ack(ev.Message)
				}
				continue
			}
			now := time.Now()
			mu.Lock()
			got[ev.Message.Text]++
			if t0, ok := sentAt[ev.Message.Text]; ok {
				latencies = append(latencies, now.Sub(t0))
			}
			mu.Unlock()
			rc.Ack(ev.Message)
		}
	}()

	// The flooder, from 127.0.0.2.
	fc, err := client.Connect(ctx, flooderHome, client.Options{LocalAddr: "127.0.0.2:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	var limited, floodErrs int
	floodDone := make(chan struct{})
	go func() {
		defer close(floodDone)
		tick := time.NewTicker(5 * time.Millisecond) // 200/s: 100× the limit of 2/s
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			_, err := fc.SendText(ctx, "sink", "flood "+strconv.Itoa(i))
			var we *transport.Error
			switch {
			case errors.As(err, &we) && we.Code == transport.ErrRateLimited:
				limited++
			case err != nil:
				floodErrs++ // banned: the connection is closed
				return
			}
		}
	}()

	// The legitimate clients, one message a second each.
	var wg sync.WaitGroup
	var sendErrs sync.Map
	for i, h := range senders {
		wg.Go(func() {
			c, err := client.Connect(ctx, h, client.Options{})
			if err != nil {
				sendErrs.Store(i, err)
				return
			}
			defer c.Close()
			for r := 0; r < rounds; r++ {
				text := fmt.Sprintf("legit%02d-%d", i, r)
				mu.Lock()
				sentAt[text] = time.Now()
				mu.Unlock()
				if _, err := c.SendText(ctx, "sink", text); err != nil {
					sendErrs.Store(i, err)
					return
				}
				time.Sleep(time.Second)
			}
		})
	}
	wg.Wait()
	sendErrs.Range(func(k, v any) bool { t.Errorf("legitimate client %v: %v", k, v); return true })

	waitFor(t, "every legitimate message", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == legit*rounds
	})
	mu.Lock()
	for text, n := range got {
		if n != 1 {
			t.Errorf("%s delivered %d times", text, n)
		}
	}
	slices.Sort(latencies)
	p99 := latencies[len(latencies)*99/100]
	mu.Unlock()
	t.Logf("legitimate send→deliver p50 %v p99 %v over %d messages", latencies[len(latencies)/2], p99, len(latencies))
	if p99 > 250*time.Millisecond {
		t.Errorf("legitimate p99 %v over 250 ms during the flood", p99)
	}

	select {
	case <-floodDone:
	case <-time.After(30 * time.Second):
		t.Fatal("the flooder was never cut off")
	}
	if limited == 0 {
		t.Error("the flooder was never rate limited")
	}
	waitFor(t, "the flooder's ban", func() bool { return strings.Contains(s.stderr.String(), "flooding, address banned") })
	bans := s.admin(t, "bans").Stdout
	if !strings.Contains(bans, "127.0.0.2/32") || strings.Contains(bans, "127.0.0.1/32") {
		t.Errorf("bans after the flood: %q", bans)
	}
	t.Logf("flooder: %d sends refused by the limit, then cut off", limited)
}
