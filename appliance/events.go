package appliance

import (
	"context"
	"sync"
	"time"

	"github.com/securechat/securechat/chat"
)

// Event is one thing an operator may want to know happened. Subject is the
// address or account it concerns, exactly as received: it may be anything
// a client sent, so whoever shows it must escape it.
type Event struct {
	Time    time.Time      `json:"time"`
	Kind    chat.EventKind `json:"kind"`
	Subject string         `json:"subject"`
	Detail  string         `json:"detail"`
	// Count is how many times it happened in a row: the same event again
	// within eventCoalesce of the last time counts on the same line, so a
	// flood fills one line, not the whole list.
	Count int `json:"count"`
}

// The event log: the server keeps the last EventsKept events in memory,
// from its start (a restart empties it); the same event again within
// EventsCoalesce of the last counts on its line.
const (
	EventsKept     = 500
	EventsCoalesce = 10 * time.Second

	eventKeep     = EventsKept
	eventCoalesce = EventsCoalesce
	maxEventField = 256 // bytes kept of a subject or detail
)

// eventLog is a fixed-size ring of the most recent events, in memory.
type eventLog struct {
	mu   sync.Mutex // guards ring, next and full
	ring [eventKeep]Event
	next int
	full bool
}

func (l *eventLog) add(now time.Time, kind chat.EventKind, subject, detail string) {
	subject, detail = clip(subject), clip(detail)
	l.mu.Lock()
	defer l.mu.Unlock()
	if last := l.lastLocked(); last != nil && last.Kind == kind && last.Subject == subject && last.Detail == detail && now.Sub(last.Time) < eventCoalesce {
		last.Count++
		last.Time = now
		return
	}
	l.ring[l.next] = Event{Time: now, Kind: kind, Subject: subject, Detail: detail, Count: 1}
	l.next = (l.next + 1) % eventKeep
	if l.next == 0 {
		l.full = true
	}
}

func (l *eventLog) lastLocked() *Event {
	if l.next == 0 && !l.full {
		return nil
	}
	return &l.ring[(l.next+eventKeep-1)%eventKeep]
}

// list returns up to n events, newest first.
func (l *eventLog) list(n int) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	size := l.next
	if l.full {
		size = eventKeep
	}
	n = min(n, size)
	out := make([]Event, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, l.ring[(l.next-i+eventKeep)%eventKeep])
	}
	return out
}

// clip bounds what an event keeps of a client-chosen string, on a rune
// boundary.
func clip(s string) string {
	if len(s) <= maxEventField {
		return s
	}
	cut := maxEventField
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}

// Events returns up to n recent events, newest first.
func (s *Server) Events(ctx context.Context, n int) ([]Event, error) { return s.events.list(n), nil }

// RecordEvent adds an event from outside the server: the admin's logins.
// It does not give up when ctx ends: a failed login is recorded even when
// its client has gone.
func (s *Server) RecordEvent(ctx context.Context, kind chat.EventKind, subject, detail string) {
	s.recordEvent(kind, subject, detail)
}

// recordEvent adds one of the server's own events.
func (s *Server) recordEvent(kind chat.EventKind, subject, detail string) {
	s.events.add(s.cfg.Now(), kind, subject, detail)
}
