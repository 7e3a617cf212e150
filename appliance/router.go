package appliance

import (
	"sync"

	"github.com/quic-go/quic-go"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/transport"
)

// Router carries live traffic to devices' connections (docs/design.md §4.3):
// pushes of committed mailbox entries, ephemeral signals, keys-low notices
// and kicks. The server reaches connections only through it, so a router
// that spans the nodes of a cluster can replace the in-process one; the
// store stays the truth, and a push lost on the way only means the entry
// is read from the mailbox instead.
type Router interface {
	// Join adds an authenticated connection of device d.
	Join(d chat.Device, c Conn)
	// Leave removes c, which Join added for d.
	Leave(d chat.Device, c Conn)
	// Attach makes c d's receiving connection, the one pushes go to. The
	// connection it replaces is closed.
	Attach(d chat.Device, c Conn)
	// Push hands committed entries to their devices' receiving connections.
	Push(deliveries []store.Delivery)
	// Signal forwards an ephemeral message, an encoded transport.Signal,
	// to d's receiving connection and reports whether d had one. The
	// body may be shared by every device of a group Send: read-only.
	Signal(d chat.Device, body []byte) bool
	// KeysLow tells d's receiving connection, if any, to top up its prekeys.
	KeysLow(d chat.Device, c transport.KeyCount)
	// Kick closes every connection of user and returns how many there were.
	Kick(user string, code quic.ApplicationErrorCode, reason string) int
	// KickDevice closes every connection of device d and returns how many
	// there were.
	KickDevice(d chat.Device, code quic.ApplicationErrorCode, reason string) int
}

// Conn is a live connection as the router sees it; sessions implement it.
// None of its methods may block on the network.
type Conn interface {
	// Offer gives the connection a committed entry of its device's mailbox.
	Offer(d *transport.Deliver)
	// Signal forwards an ephemeral message, an encoded transport.Signal
	// (read-only: it may be shared).
	Signal(body []byte)
	// KeysLow tells the device to top up its prekeys.
	KeysLow(c transport.KeyCount)
	// Close closes the connection.
	Close(code quic.ApplicationErrorCode, reason string)
}

// localRouter is the in-process Router: maps of this server's connections.
type localRouter struct {
	mu        sync.Mutex                      // guards conns and receivers
	conns     map[string]map[Conn]chat.Device // user → its connections
	receivers map[chat.Device]Conn
}

func newLocalRouter() *localRouter {
	return &localRouter{conns: make(map[string]map[Conn]chat.Device), receivers: make(map[chat.Device]Conn)}
}

func (r *localRouter) Join(d chat.Device, c Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conns[d.User] == nil {
		r.conns[d.User] = make(map[Conn]chat.Device)
	}
	r.conns[d.User][c] = d
}

func (r *localRouter) Leave(d chat.Device, c Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.conns[d.User], c)
	if len(r.conns[d.User]) == 0 {
		delete(r.conns, d.User)
	}
	if r.receivers[d] == c {
		delete(r.receivers, d)
	}
}

func (r *localRouter) Attach(d chat.Device, c Conn) {
	r.mu.Lock()
	old := r.receivers[d]
	r.receivers[d] = c
	r.mu.Unlock()
	if old != nil && old != c {
		old.Close(transport.CloseReplaced, "this device connected again from elsewhere")
	}
}

func (r *localRouter) receiver(d chat.Device) Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.receivers[d]
}

func (r *localRouter) Push(deliveries []store.Delivery) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range deliveries {
		if c := r.receivers[deliveries[i].To]; c != nil {
			c.Offer(deliverOf(&deliveries[i].Entry))
		}
	}
}

func (r *localRouter) Signal(d chat.Device, body []byte) bool {
	c := r.receiver(d)
	if c == nil {
		return false
	}
	c.Signal(body)
	return true
}

func (r *localRouter) KeysLow(d chat.Device, count transport.KeyCount) {
	if c := r.receiver(d); c != nil {
		c.KeysLow(count)
	}
}

func (r *localRouter) Kick(user string, code quic.ApplicationErrorCode, reason string) int {
	r.mu.Lock()
	var victims []Conn
	for c := range r.conns[user] {
		victims = append(victims, c)
	}
	r.mu.Unlock()
	for _, c := range victims {
		c.Close(code, reason)
	}
	return len(victims)
}

func (r *localRouter) KickDevice(d chat.Device, code quic.ApplicationErrorCode, reason string) int {
	r.mu.Lock()
	var victims []Conn
	for c, cd := range r.conns[d.User] {
		if cd == d {
			victims = append(victims, c)
		}
	}
	r.mu.Unlock()
	for _, c := range victims {
		c.Close(code, reason)
	}
	return len(victims)
}

// deliverOf is a mailbox entry as the wire pushes it.
func deliverOf(e *store.Entry) *transport.Deliver {
	return &transport.Deliver{Seq: e.Seq, From: e.From.User, FromDevice: e.From.ID, MessageID: e.MessageID, ServerTime: e.Time.UnixMilli(), Payload: e.Payload,
		Group: e.Group, Shared: e.Shared}
}
