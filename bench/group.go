package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/transport"
)

// The group case (issue 10, docs/design.md §8): one sender, a small group
// (groupSmall members) and a large one (-group members), both holding the
// same accounts. A group text is encrypted once and sent as one shared
// ciphertext the server fans out (protocol.md §6.7, §8.3), so the sender's
// CPU per message must not grow with the group. The sender sends
// -group-messages texts to each group while no member is connected (the
// bench process then runs the sender alone, so its CPU is the sender's),
// then every member connects and takes its mailbox: the server's fan-out
// in deliveries per second.

const groupSmall = 5

// groupStats is the group case's outcome.
type groupStats struct {
	Members  int `json:"members"`
	Messages int `json:"messages"` // per group
	// Sender: bench-process CPU per message and Send frame bytes, for
	// the small and the large group.
	SmallCPUUS float64 `json:"small_sender_cpu_us"`
	LargeCPUUS float64 `json:"large_sender_cpu_us"`
	// Loopback bytes per message while the sender sends alone (QUIC
	// packets both ways, anyone's: other processes' traffic counts too);
	// 0 if unknown.
	SmallWireBytes int64   `json:"small_wire_bytes"`
	LargeWireBytes int64   `json:"large_wire_bytes"`
	SmallAckMS     float64 `json:"small_ack_ms"` // mean SendGroupText → durable ack
	LargeAckMS     float64 `json:"large_ack_ms"`
	// Fan-out: deliveries of the large group's messages to every member,
	// from the members' connecting to the last one's last delivery.
	Deliveries       int     `json:"deliveries"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	ServerCPUUS      float64 `json:"server_cpu_us_per_delivery"`
	SetupS           float64 `json:"setup_s"` // register, create, first message (sender keys to every device)
}

// groupLimits lifts, beyond unlimited, what creating a large group costs
// one account: an identity lookup and a prekey fetch per member.
var groupLimits = []string{
	"--lookup-rate", "1e6", "--lookup-burst", "1000000",
	"--key-fetch-rate", "1e6", "--key-fetch-burst", "1000000",
}

func memberName(i int) string { return fmt.Sprintf("member%03d", i) }

func groupPhase(ctx context.Context, o *options, dir string, stderr io.Writer, progress func(string, ...any)) (*groupStats, error) {
	data, homes := filepath.Join(dir, "group-server"), filepath.Join(dir, "group-homes")
	srv, addr, fingerprint, err := startServer(ctx, o.bin, data, stderr, groupLimits...)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	fp, err := transport.ParseFingerprint(fingerprint)
	if err != nil {
		return nil, err
	}
	setup := time.Now()
	n := o.group
	hs := make([]*home.Home, n)
	defer func() {
		for _, h := range hs {
			if h != nil {
				h.Close()
			}
		}
	}()
	err = parallel(ctx, n, registerParallelism, func(i int) error {
		h, err := home.Open(filepath.Join(homes, memberName(i)), home.Options{
			Passphrase: benchPassword, Create: true, KDF: home.KDFParams{Time: 1, MemoryK: 64, Threads: 1},
		})
		if err != nil {
			return err
		}
		hs[i] = h
		_, err = client.Register(ctx, h, client.EnrollOptions{Server: addr, User: memberName(i), Password: benchPassword, Pin: fp, DeviceName: "bench"})
		return err
	})
	if err != nil {
		return nil, err
	}
	progress("group: %d members registered in %v", n, time.Since(setup).Round(time.Millisecond))
	sender, err := client.Connect(ctx, hs[0], client.Options{})
	if err != nil {
		return nil, err
	}
	defer sender.Close()
	others := make([]string, n-1)
	for i := range others {
		others[i] = memberName(i + 1)
	}
	small, err := sender.CreateGroup(ctx, "small", others[:min(groupSmall-1, len(others))])
	if err != nil {
		return nil, fmt.Errorf("create the small group: %w", err)
	}
	large, err := sender.CreateGroup(ctx, "large", others)
	if err != nil {
		return nil, fmt.Errorf("create the large group: %w", err)
	}
	// The first message of each group sends the sender's key to every
	// member device over its pairwise session: setup, not measured.
	for _, g := range []client.GroupInfo{small, large} {
		if _, err := sender.SendGroupText(ctx, g.Conversation, "hello"); err != nil {
			return nil, fmt.Errorf("first message to %s: %w", g.Title, err)
		}
	}
	// Every member takes the welcome and the first messages, so that the
	// measured deliveries are plain group messages.
	if _, err := drainMembers(ctx, hs[1:], large.Conversation, 0); err != nil {
		return nil, err
	}
	// The members' homes are closed while the sender sends, so that the
	// bench process runs the sender alone (an open home has background
	// work of its own), and opened again to take the messages.
	for i := 1; i < n; i++ {
		hs[i].Close()
		hs[i] = nil
	}
	st := &groupStats{Members: n, Messages: o.groupMessages, SetupS: time.Since(setup).Seconds()}
	progress("group: groups made and first messages taken in %v", time.Since(setup).Round(time.Millisecond))

	send := func(g client.GroupInfo) (cpu time.Duration, ack time.Duration, wire int64, err error) {
		c0, err := selfCPU()
		if err != nil {
			return 0, 0, 0, err
		}
		l0 := loopbackBytes()
		t0 := time.Now()
		for i := 0; i < o.groupMessages; i++ {
			if _, err := sender.SendGroupText(ctx, g.Conversation, o.text(now())); err != nil {
				return 0, 0, 0, err
			}
		}
		wall := time.Since(t0)
		if l1 := loopbackBytes(); l0 >= 0 && l1 >= l0 {
			wire = (l1 - l0) / int64(o.groupMessages)
		}
		c1, err := selfCPU()
		return (c1 - c0) / time.Duration(o.groupMessages), wall / time.Duration(o.groupMessages), wire, err
	}
	cpu, ack, wire, err := send(small)
	if err != nil {
		return nil, err
	}
	st.SmallCPUUS, st.SmallAckMS, st.SmallWireBytes = us(cpu), ms(ack), wire
	if cpu, ack, wire, err = send(large); err != nil {
		return nil, err
	}
	st.LargeCPUUS, st.LargeAckMS, st.LargeWireBytes = us(cpu), ms(ack), wire

	err = parallel(ctx, n-1, 16, func(i int) error {
		h, err := home.Open(filepath.Join(homes, memberName(i+1)), home.Options{Passphrase: benchPassword, KDF: home.KDFParams{Time: 1, MemoryK: 64, Threads: 1}})
		hs[i+1] = h
		return err
	})
	if err != nil {
		return nil, err
	}
	s0, err := procCPU(strconv.Itoa(srv.pid()))
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	got, err := drainMembers(ctx, hs[1:], large.Conversation, o.groupMessages)
	if err != nil {
		return nil, err
	}
	wall := time.Since(t0)
	s1, err := procCPU(strconv.Itoa(srv.pid()))
	if err != nil {
		return nil, err
	}
	st.Deliveries = got
	st.DeliveriesPerSec = float64(got) / wall.Seconds()
	st.ServerCPUUS = us((s1 - s0) / time.Duration(max(got, 1)))
	if done, perr := srv.exited(); done {
		return nil, perr
	}
	return st, nil
}

// drainMembers connects every member, takes its mailbox (acking it) and
// returns how many large-group texts arrived; with want > 0 it waits until
// each member has want of them.
func drainMembers(ctx context.Context, hs []*home.Home, large chat.Conversation, want int) (int, error) {
	var mu sync.Mutex
	total := 0
	err := parallel(ctx, len(hs), 64, func(i int) error {
		c, err := client.Connect(ctx, hs[i], client.Options{Receive: true})
		if err != nil {
			return err
		}
		defer c.Close()
		got := 0
		emptied := false
		for !emptied || got < want {
			select {
			case ev, ok := <-c.Events():
				if !ok {
					return errors.New("connection closed while draining")
				}
				switch ev.Type {
				case client.EventQueueEmpty:
					emptied = true
				case client.EventMessage:
					m := ev.Message
					if m.Waiting {
						return fmt.Errorf("%s waits for a key: %s", m.Conversation, m.Text)
					}
					if m.Kind == chat.KindError {
						return fmt.Errorf("a member could not read a message: %s", m.Text)
					}
					if m.Kind == chat.KindText && m.Conversation == large && m.Text != "hello" {
						got++
					}
					if err := c.Ack(m); err != nil {
						return err
					}
				}
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		mu.Lock()
		total += got
		mu.Unlock()
		return nil
	})
	return total, err
}
