package appliance

import (
	"context"
	"sync"
	"testing"

	"github.com/quic-go/quic-go"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/transport"
)

// fakeConn records what the router hands a connection.
type fakeConn struct {
	mu      sync.Mutex
	offered []uint64
	signals int
	low     int
	closed  quic.ApplicationErrorCode
}

func (c *fakeConn) Offer(d *transport.Deliver) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offered = append(c.offered, d.Seq)
}
func (c *fakeConn) Signal([]byte)              { c.signals++ }
func (c *fakeConn) KeysLow(transport.KeyCount) { c.low++ }
func (c *fakeConn) Close(code quic.ApplicationErrorCode, _ string) {
	c.closed = code
}

func TestLocalRouter(t *testing.T) {
	r := newLocalRouter()
	bob1, bob2, alice1 := chat.DeviceOf("bob", 1), chat.DeviceOf("bob", 2), chat.DeviceOf("alice", 1)
	first, second, other, sender := &fakeConn{}, &fakeConn{}, &fakeConn{}, &fakeConn{}
	r.Join(bob1, first)
	r.Attach(bob1, first)
	r.Join(bob1, second)
	r.Attach(bob1, second) // the device connected again: the first is replaced
	if first.closed != transport.CloseReplaced || second.closed != 0 {
		t.Errorf("replace: first closed %v, second %v", first.closed, second.closed)
	}
	r.Join(bob2, other) // authenticated, not receiving
	r.Join(alice1, sender)

	r.Push([]store.Delivery{{To: bob1, Entry: store.Entry{Seq: 7}}, {To: bob2, Entry: store.Entry{Seq: 8}}, {To: bob1, Entry: store.Entry{Seq: 9}}})
	if len(second.offered) != 2 || second.offered[0] != 7 || second.offered[1] != 9 || len(other.offered) != 0 || len(first.offered) != 0 {
		t.Errorf("push: receiver got %v, non-receiver %v, replaced %v", second.offered, other.offered, first.offered)
	}
	if !r.Signal(bob1, nil) || r.Signal(bob2, nil) || second.signals != 1 {
		t.Error("signal goes to receiving connections only, and says so")
	}
	r.KeysLow(bob1, transport.KeyCount{})
	r.KeysLow(bob2, transport.KeyCount{})
	if second.low != 1 || other.low != 0 {
		t.Error("keys-low notice misrouted")
	}
	// A replaced connection that leaves does not detach its successor.
	r.Leave(bob1, first)
	if !r.Signal(bob1, nil) {
		t.Error("the replaced connection's leave detached the new receiver")
	}
	if n := r.Kick("bob", transport.CloseKicked, "test"); n != 2 || second.closed != transport.CloseKicked || other.closed != transport.CloseKicked || sender.closed != 0 {
		t.Errorf("kick bob: %d closed", n)
	}
	r.Leave(bob1, second)
	r.Leave(bob2, other)
	if n := r.Kick("bob", transport.CloseKicked, "test"); n != 0 || r.Signal(bob1, nil) {
		t.Errorf("after leaving: kick closed %d", n)
	}
}

func TestLocalChangesOrderAndCancel(t *testing.T) {
	l := newLocalChanges()
	var a, b []ChangeKind
	l.Subscribe(func(c Change) { a = append(a, c.Kind) })
	cancel := l.Subscribe(func(c Change) { b = append(b, c.Kind) })
	ctx := context.Background()
	l.Publish(ctx, Change{Kind: ChangeBan})
	l.Publish(ctx, Change{Kind: ChangeMute})
	cancel()
	l.Publish(ctx, Change{Kind: ChangeLimits})
	if len(a) != 3 || a[0] != ChangeBan || a[1] != ChangeMute || a[2] != ChangeLimits || len(b) != 2 {
		t.Errorf("first follower %v, cancelled one %v", a, b)
	}
	done, stop := context.WithCancel(ctx)
	stop()
	if err := l.Publish(done, Change{Kind: ChangeUnban}); err == nil || len(a) != 3 {
		t.Errorf("publish with an ended context: %v, applied %v", err, a)
	}
}
