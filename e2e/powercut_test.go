package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/securechat/securechat/client"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/transport"
)

// TestPowerCut (issue 15 point 5): the server is killed with SIGKILL in
// the middle of its commits again and again while two senders write as
// fast as it acknowledges; between the kill and the restart the kernel's
// page cache is dropped (as root: the store is then read back from the
// disk, not from what the dead process left in memory), and the store
// must check clean (`serve --check-store`) every time. At the end every
// acknowledged message is delivered, exactly once.
func TestPowerCut(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--message-rate", "1e6", "--message-burst", "1000000", "--byte-rate", "1e12", "--byte-burst", "1099511627776")
	fp, err := transport.ParseFingerprint(s.FP)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	open := func(name string) *home.Home {
		h, err := home.Open(filepath.Join(t.TempDir(), name), home.Options{Passphrase: passphrase, Create: true, KDF: home.KDFParams{Time: 1, MemoryK: 64, Threads: 1}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		if _, err := client.Register(ctx, h, client.EnrollOptions{Server: s.Addr, User: name, Password: password, Pin: fp}); err != nil {
			t.Fatal(err)
		}
		return h
	}
	bob := open("bob")
	senders := []*home.Home{open("alice"), open("carol")}
	dropCaches := os.Getuid() == 0
	if !dropCaches {
		t.Log("not root: the page cache is not dropped between kill and restart")
	}

	var mu sync.Mutex
	confirmed := map[string]bool{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, h := range senders {
		wg.Go(func() {
			for n := 0; ; {
				select {
				case <-stop:
					return
				default:
				}
				c, err := client.Connect(ctx, h, client.Options{})
				if err != nil {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				for {
					text := fmt.Sprintf("m%d-%d %s", i, n, string(make([]byte, rand.IntN(2000))))
					res, err := c.SendText(ctx, "bob", text)
					if err != nil {
						break // the server died: reconnect; the outbox resends it
					}
					mu.Lock()
					confirmed[res.ID] = true
					mu.Unlock()
					n++
				}
				c.Close()
				select {
				case <-stop:
					return
				default:
				}
			}
		})
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(confirmed)
	}
	const cuts = 12
	for i := range cuts {
		// Each cut comes while the senders are writing: after a few more
		// messages were acknowledged (however slow the machine, or the
		// race detector), at a random moment.
		before := count()
		for deadline := time.Now().Add(time.Minute); count() < before+5; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no message acknowledged within a minute after restart %d", i)
			}
		}
		time.Sleep(time.Duration(rand.IntN(200)) * time.Millisecond)
		s.kill()
		if dropCaches {
			if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
				t.Fatalf("dropping the page cache: %v", err)
			}
		}
		if r := run(t, nil, "", "serve", "--check-store", "--data", s.data); r.Code != 0 {
			t.Fatalf("after cut %d the store does not check clean: %s%s", i+1, r.Stdout, r.Stderr)
		}
		s.start()
	}
	close(stop)
	wg.Wait()
	// What the senders' outboxes kept unconfirmed goes now.
	for _, h := range senders {
		c, err := client.Connect(ctx, h, client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		done, err := c.FlushOutbox(ctx)
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		for _, o := range done {
			if o.Err == nil {
				confirmed[o.Result.ID] = true
			}
		}
		mu.Unlock()
		c.Close()
	}
	want := count()

	c, err := client.Connect(ctx, bob, client.Options{Receive: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := map[string]int{}
	for len(got) < want {
		select {
		case ev := <-c.Events():
			if ev.Type == client.EventMessage {
				got[ev.Message.ID]++
				c.Ack(ev.Message)
			}
		case <-ctx.Done():
			t.Fatalf("bob got %d of the %d acknowledged messages", len(got), want)
		}
	}
	for id := range confirmed {
		if got[id] != 1 {
			t.Errorf("acknowledged message %s delivered %d times", id, got[id])
		}
	}
	t.Logf("%d cuts, %d messages acknowledged and delivered once each (page cache dropped: %v)", cuts, want, dropCaches)
}
