package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/transport"
)

// TestSoak runs the real server under a steady end-to-end encrypted load
// for $SECURECHAT_SOAK (a duration; unset, the test skips: `make soak`
// runs it for 10 minutes, CI for 30 seconds) while the server is
// restarted (SIGTERM) and crashed (SIGKILL) under it, then checks what
// must hold whatever happened:
//
//   - every message whose send was confirmed is delivered, exactly once;
//   - a message whose confirmation was lost is delivered at most once, and
//     once its sender's outbox has resent it, exactly once;
//   - nothing is delivered twice, nothing fails to decrypt, nothing is
//     delivered that nobody sent;
//   - the mailboxes are empty once everything is acked;
//   - after the load, the server's goroutines come back to what they were
//     before it, and its memory over the calm final stretch does not grow
//     beyond noise (no leak per message): sampled a ninth of the run after
//     the last restart and at the end.
func TestSoak(t *testing.T) {
	total, err := time.ParseDuration(os.Getenv("SECURECHAT_SOAK"))
	if err != nil || total <= 0 {
		t.Skip("set SECURECHAT_SOAK to a duration (make soak)")
	}
	s := startServer(t, "--message-rate", "1e6", "--message-burst", "1000000", "--conn-rate", "1e6", "--conn-burst", "1000000",
		"--key-fetch-rate", "1e6", "--key-fetch-burst", "1000000", "--register-rate", "1e6", "--register-burst", "1000000")
	fp, err := transport.ParseFingerprint(s.FP)
	if err != nil {
		t.Fatal(err)
	}
	baseGoroutines := goroutines(t, s)

	const users = 6
	sk := &soak{t: t, s: s, sent: map[string]int{}, got: map[string]int{}, start: time.Now()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	homes := make([]*home.Home, users)
	for i := range homes {
		name := fmt.Sprintf("soak%d", i)
		h, err := home.Open(filepath.Join(t.TempDir(), name), home.Options{
			Passphrase: passphrase, Create: true, KDF: home.KDFParams{Time: 1, MemoryK: 64, Threads: 1},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		if _, err := client.Register(ctx, h, client.EnrollOptions{Server: s.Addr, User: name, Password: password, Pin: fp}); err != nil {
			t.Fatal(err)
		}
		homes[i] = h
	}

	// The load: users 0 to 3 each run one connection of the client
	// library that receives, acks and sends to the others, reconnecting
	// whenever the server goes away; users 4 and 5 run the engine of the
	// terminal client (its queue, reconnects, receipts).
	const engines = 2
	stopSending := make(chan struct{})
	var wg sync.WaitGroup
	var clients []*soakClient
	var engs []*soakEngine
	for i, h := range homes {
		name, rng := fmt.Sprintf("soak%d", i), rand.New(rand.NewPCG(uint64(i), 99))
		if i >= users-engines {
			e := &soakEngine{soak: sk, home: h, name: name, users: users, rng: rng, ids: map[string]string{}}
			if err := e.start(); err != nil {
				t.Fatal(err)
			}
			engs = append(engs, e)
			wg.Go(func() { e.run(ctx, stopSending) })
			continue
		}
		c := &soakClient{soak: sk, home: h, name: name, users: users, rng: rng}
		clients = append(clients, c)
		wg.Go(func() { c.run(ctx, stopSending) })
	}

	// Chaos for the first two thirds: a restart or a crash every 2 to 5 s.
	calm := time.Now().Add(total * 2 / 3)
	end := time.Now().Add(total)
	rng := rand.New(rand.NewPCG(7, 7))
	restarts, crashes := 0, 0
	for time.Now().Before(calm) {
		time.Sleep(2*time.Second + time.Duration(rng.IntN(3000))*time.Millisecond)
		what := "restart"
		if rng.IntN(3) == 0 {
			s.kill()
			crashes++
			what = "crash"
		} else {
			s.stop()
			restarts++
		}
		sk.mu.Lock()
		sk.chaos = append(sk.chaos, fmt.Sprintf("%s at %v", what, time.Since(sk.start).Round(time.Millisecond)))
		sk.mu.Unlock()
		s.start()
	}
	time.Sleep(total / 9) // warm up after the last restart before the first sample
	rssCalm := rssKB(t, s)
	time.Sleep(time.Until(end))
	rssEnd := rssKB(t, s)
	close(stopSending)

	// Every client resends what its outbox still holds, then the receivers
	// drain until nothing new arrives.
	for _, c := range clients {
		c.flushed.Wait()
	}
	for _, e := range engs {
		e.waitSent(t, 60*time.Second)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		sk.mu.Lock()
		missing := sk.missingLocked()
		sk.mu.Unlock()
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%d confirmed messages never delivered, e.g. %q", len(missing), missing[0])
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // anything delivered twice arrives now
	cancel()
	wg.Wait()
	for _, e := range engs {
		e.eng.Close()
	}

	sk.mu.Lock()
	defer sk.mu.Unlock()
	confirmed := 0
	for text, state := range sk.sent {
		if state == sentConfirmed {
			confirmed++
		}
		if n := sk.got[text]; n != 1 && state == sentConfirmed {
			t.Errorf("%q: confirmed, delivered %d times", text, n)
		}
	}
	for text, n := range sk.got {
		if _, ok := sk.sent[text]; !ok {
			t.Errorf("delivered %q, which nobody sent", text)
		}
		if n > 1 {
			t.Errorf("%q delivered %d times", text, n)
		}
	}
	if sk.errors > 0 {
		t.Errorf("%d messages did not decrypt (first: %s)", sk.errors, sk.firstError)
		for pair, first := range sk.errorPairs {
			t.Logf("  %s: %s", pair, first)
		}
		t.Logf("server events: %s", strings.Join(sk.chaos, ", "))
	}
	t.Logf("soak %v: %d messages confirmed, %d delivered, %d sends unconfirmed at first; %d restarts, %d crashes; server RSS %d KiB at the calm stretch, %d KiB at its end",
		total, confirmed, len(sk.got), sk.unconfirmed, restarts, crashes, rssCalm, rssEnd)
	if confirmed < 10 {
		t.Errorf("only %d messages confirmed: the load did not run", confirmed)
	}
	// Every user, on the library or on the engine, sent and received.
	from, to := map[string]int{}, map[string]int{}
	for text := range sk.got {
		var f, r string
		fmt.Sscanf(text, "%s → %s", &f, &r)
		from[f]++
		to[r]++
	}
	for i := range users {
		name := fmt.Sprintf("soak%d", i)
		if from[name] == 0 || to[name] == 0 {
			t.Errorf("%s sent %d and received %d messages", name, from[name], to[name])
		}
	}
	t.Logf("delivered per sender: %v", from)

	var stats struct {
		QueueDepth int `json:"queue_depth"`
	}
	s.api(t, "GET", "/api/stats", nil, &stats)
	if stats.QueueDepth != 0 {
		t.Errorf("%d messages left in mailboxes after everything was acked", stats.QueueDepth)
	}
	if rssEnd > rssCalm+rssCalm/2+32<<10 {
		t.Errorf("server memory grew from %d KiB to %d KiB over the calm stretch", rssCalm, rssEnd)
	}
	waitFor(t, "the server's goroutines to come back down", func() bool {
		return goroutines(t, s) <= baseGoroutines+5
	})
}

// Send states of a soak text.
const (
	sentUnconfirmed = 1 // the connection went before the answer; in the outbox
	sentConfirmed   = 2 // the server answered: durably stored
)

// soak is the shared record of what was sent and received.
type soak struct {
	t *testing.T
	s *server

	mu          sync.Mutex     // guards the fields below
	sent        map[string]int // text → sentUnconfirmed or sentConfirmed
	got         map[string]int // text → deliveries
	unconfirmed int
	errors      int
	firstError  string
	errorPairs  map[string]string // sender → receiver: the first failure
	start       time.Time
	chaos       []string // what happened to the server, when
}

// missingLocked lists the confirmed texts not delivered yet.
func (sk *soak) missingLocked() []string {
	var out []string
	for text, state := range sk.sent {
		if state == sentConfirmed && sk.got[text] == 0 {
			out = append(out, text)
		}
	}
	return out
}

type soakClient struct {
	*soak
	home    *home.Home
	name    string
	users   int
	rng     *rand.Rand
	seq     int
	flushed sync.WaitGroup // done once the final outbox flush has confirmed everything
}

// run connects, and reconnects, until ctx ends; it sends until stop and
// then flushes its outbox once.
func (c *soakClient) run(ctx context.Context, stop <-chan struct{}) {
	c.flushed.Add(1)
	flushedOnce := false
	defer func() {
		if !flushedOnce {
			c.flushed.Done()
		}
	}()
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		cl, err := client.Connect(cctx, c.home, client.Options{Receive: true})
		cancel()
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		done := make(chan struct{})
		go func() { c.receive(cl); close(done) }()
		c.confirmOutbox(ctx, cl)
		sending := true
		for sending {
			select {
			case <-stop:
				sending = false
				continue
			case <-done:
				sending = false
				continue
			case <-ctx.Done():
				sending = false
				continue
			default:
			}
			if !c.send(ctx, cl) {
				break
			}
			time.Sleep(time.Duration(c.rng.IntN(20)) * time.Millisecond)
		}
		select {
		case <-stop:
			if !flushedOnce && c.confirmOutbox(ctx, cl) {
				flushedOnce = true
				c.flushed.Done()
			}
		default:
		}
		select {
		case <-done: // the connection ended; go round
		case <-ctx.Done():
			cl.Close()
			<-done
			return
		case <-time.After(200 * time.Millisecond):
			if flushedOnce {
				// Keep receiving until the test ends.
				select {
				case <-done:
				case <-ctx.Done():
					cl.Close()
					<-done
					return
				}
			}
		}
		cl.Close()
		<-done
	}
}

// send sends one text; false when the connection is gone.
func (c *soakClient) send(ctx context.Context, cl *client.Client) bool {
	to := fmt.Sprintf("soak%d", c.rng.IntN(c.users))
	if to == c.name {
		return true
	}
	c.seq++
	text := c.name + " → " + to + " #" + strconv.Itoa(c.seq)
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err := cl.SendText(sctx, to, text)
	cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	var ue *client.UnconfirmedError
	switch {
	case err == nil:
		c.sent[text] = sentConfirmed
		return true
	case errors.As(err, &ue), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		// Perhaps stored, perhaps not; if it is in the outbox, a flush
		// confirms it later.
		c.sent[text] = sentUnconfirmed
		c.unconfirmed++
		return false
	default:
		c.t.Errorf("send %q: %v", text, err)
		return false
	}
}

// confirmOutbox resends what the outbox holds and records what the
// server then confirmed; true when the outbox is empty.
func (c *soakClient) confirmOutbox(ctx context.Context, cl *client.Client) bool {
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	done, err := cl.FlushOutbox(fctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, o := range done {
		if o.Err == nil {
			c.sent[o.Text] = sentConfirmed
		}
	}
	return err == nil && allConfirmed(done)
}

func allConfirmed(done []client.Outboxed) bool {
	for _, o := range done {
		if o.Err != nil {
			return false
		}
	}
	return true
}

// receive records and acks what arrives until the connection ends.
func (c *soakClient) receive(cl *client.Client) {
	for ev := range cl.Events() {
		if ev.Type != client.EventMessage {
			continue
		}
		m := ev.Message
		c.mu.Lock()
		if m.Kind == chat.KindText {
			c.got[m.Text]++
		} else if m.Kind == chat.KindError {
			c.errors++
			pair := m.From.User + " → " + c.name
			if c.errorPairs == nil {
				c.errorPairs = map[string]string{}
			}
			if _, ok := c.errorPairs[pair]; !ok {
				c.errorPairs[pair] = fmt.Sprintf("first at %v: %s", time.Since(c.start).Round(time.Millisecond), m.Text)
			}
			if c.firstError == "" {
				c.firstError = m.Text
			}
		}
		c.mu.Unlock()
		cl.Ack(m) // after recording: a crash in between redelivers, which must then be deduplicated
	}
}

// soakEngine is a user on the terminal client's engine.
type soakEngine struct {
	*soak
	home  *home.Home
	name  string
	users int
	rng   *rand.Rand
	eng   *client.Engine
	seq   int
	ids   map[string]string // message id → text, for the engine's sends (under soak.mu)
}

func (e *soakEngine) start() error {
	eng, err := client.StartEngine(e.home, client.EngineOptions{MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond})
	e.eng = eng
	return err
}

// run queues texts until stop and records what the engine reports until
// ctx ends.
func (e *soakEngine) run(ctx context.Context, stop <-chan struct{}) {
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(5+e.rng.IntN(20)) * time.Millisecond):
			}
			to := fmt.Sprintf("soak%d", e.rng.IntN(e.users))
			if to == e.name {
				continue
			}
			e.seq++
			text := e.name + " → " + to + " #" + strconv.Itoa(e.seq)
			e.mu.Lock() // before Send: its state event may come first
			entry, err := e.eng.Send(chat.Peer(to), text)
			if err != nil {
				e.mu.Unlock()
				e.t.Errorf("engine send %q: %v", text, err)
				return
			}
			e.ids[entry.ID] = text
			e.sent[text] = sentUnconfirmed // the engine resends until stored
			e.mu.Unlock()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-e.eng.Events():
			if !ok {
				return
			}
			e.mu.Lock()
			switch {
			case ev.Type == client.UIMessage && ev.Entry != nil && !ev.Entry.Outgoing:
				if ev.Entry.Kind == chat.KindText {
					e.got[ev.Entry.Text]++
				} else if ev.Entry.Kind == chat.KindError {
					e.errors++
					if e.firstError == "" {
						e.firstError = ev.Entry.Text
					}
				}
			case ev.Type == client.UIState && ev.State >= client.StateStored:
				if text, ok := e.ids[ev.ID]; ok {
					e.sent[text] = sentConfirmed
				}
			}
			e.mu.Unlock()
		}
	}
}

// waitSent waits until the engine has had every queued text stored.
func (e *soakEngine) waitSent(t *testing.T, d time.Duration) {
	deadline := time.Now().Add(d)
	for {
		e.mu.Lock()
		left := 0
		for _, text := range e.ids {
			if e.sent[text] != sentConfirmed {
				left++
			}
		}
		e.mu.Unlock()
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: %d queued texts never confirmed", e.name, left)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// kill crashes the server with SIGKILL: no shutdown, no final commit.
func (s *server) kill() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
	s.cmd = nil
	// A crashed server leaves its address files; start waits for new ones.
	os.Remove(filepath.Join(s.data, "listen.addr"))
	os.Remove(filepath.Join(s.data, "admin.addr"))
}

// metrics scrapes the server's /metrics with the admin token.
func (s *server) metrics(t *testing.T) string {
	req, _ := http.NewRequest("GET", "http://"+adminAddr(t, s)+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+s.token(t))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

// rssKB is the server process's resident memory.
func rssKB(t *testing.T, s *server) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// goroutines reads go_goroutines from the server's /metrics.
func goroutines(t *testing.T, s *server) int {
	for _, l := range strings.Split(s.metrics(t), "\n") {
		if v, ok := strings.CutPrefix(l, "go_goroutines "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return int(n)
		}
	}
	t.Fatal("no go_goroutines in /metrics")
	return 0
}
