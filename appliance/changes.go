package appliance

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/securechat/securechat/transport"
)

// Bans, mutes and live limits are published as changes (docs/design.md
// §4.4): the server that takes an operator's command stores it, then
// publishes the change, and every server following the feed, itself
// included, applies it to what it holds in memory through the same path.
// In-process there is one follower; a cluster's feed would carry the
// changes to every node.

// ChangeKind says what a Change changes.
type ChangeKind uint8

const (
	ChangeBan    ChangeKind = 1 // Ban is in force
	ChangeUnban  ChangeKind = 2 // the ban of Ban.Target is lifted
	ChangeMute   ChangeKind = 3 // User is muted until Until (zero: until unmuted)
	ChangeUnmute ChangeKind = 4 // User may send again
	ChangeLimits ChangeKind = 5 // Limits are the rate limits in force
)

func (k ChangeKind) String() string {
	switch k {
	case ChangeBan:
		return "ban"
	case ChangeUnban:
		return "unban"
	case ChangeMute:
		return "mute"
	case ChangeUnmute:
		return "unmute"
	case ChangeLimits:
		return "limits"
	}
	return fmt.Sprintf("change%d", uint8(k))
}

// Change is one published change of moderation or limits state.
type Change struct {
	Kind   ChangeKind
	Ban    Ban       // ChangeBan; ChangeUnban uses Target only
	User   string    // ChangeMute, ChangeUnmute
	Until  time.Time // ChangeMute
	Limits Limits    // ChangeLimits
}

// Changes is the publish/subscribe seam for changes.
type Changes interface {
	// Publish hands c to every subscriber, in the order of publication;
	// it returns once the local subscribers have applied it.
	Publish(ctx context.Context, c Change) error
	// Subscribe calls apply for every change published from now on, one
	// at a time, until cancel is called. apply must not publish.
	Subscribe(apply func(Change)) (cancel func())
}

// localChanges is the in-process Changes.
type localChanges struct {
	mu   sync.Mutex // serializes publications and guards subs
	subs map[int]func(Change)
	next int
}

func newLocalChanges() *localChanges { return &localChanges{subs: make(map[int]func(Change))} }

func (l *localChanges) Publish(ctx context.Context, c Change) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, apply := range l.subs {
		apply(c)
	}
	return nil
}

func (l *localChanges) Subscribe(apply func(Change)) func() {
	l.mu.Lock()
	defer l.mu.Unlock()
	id := l.next
	l.next++
	l.subs[id] = apply
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		delete(l.subs, id)
	}
}

// apply is the server's subscriber: it changes what the server holds in
// memory and closes the connections a new ban covers.
func (s *Server) apply(c Change) {
	switch c.Kind {
	case ChangeBan:
		s.bans.put(c.Ban)
		n := 0
		if t, err := parseBanTarget(c.Ban.Target); err == nil {
			n = s.closeMatching(t, transport.CloseBanned, "banned: "+c.Ban.Reason)
		}
		// Logged where applied, with this server's count (operations.md §8).
		s.log.Warn("ban", "target", c.Ban.Target, "reason", c.Ban.Reason, "expires", logExpiry(c.Ban.Expires), "closed", n)
	case ChangeUnban:
		s.bans.remove(c.Ban.Target)
	case ChangeMute:
		s.mutes.set(c.User, c.Until, true)
	case ChangeUnmute:
		s.mutes.set(c.User, time.Time{}, false)
	case ChangeLimits:
		l := c.Limits
		s.limits.Store(&l)
		s.applyLimits(l)
	}
}

// logExpiry is an expiry as a log line shows it: "never" for the zero time
// (a permanent ban, mute or invite), not 0001-01-01.
func logExpiry(t time.Time) any {
	if t.IsZero() {
		return "never"
	}
	return t
}
