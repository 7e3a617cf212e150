package appliance

import (
	"container/list"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter is a table of token buckets (x/time/rate) keyed by a string, with
// at most max entries: the least recently used is dropped first, so that a
// flood of distinct keys cannot grow memory (docs/design.md §4). The clock is the
// caller's, so tests can use a fake one.
type limiter struct {
	limit rate.Limit
	burst int
	max   int

	mu    sync.Mutex // guards order and byKey
	order *list.List // of *limiterEntry, most recently used first
	byKey map[string]*list.Element
}

type limiterEntry struct {
	key string
	lim *rate.Limiter
}

// newLimiter returns a table of at most max keys that refuses everything
// until set gives it a rate and burst.
func newLimiter(max int) *limiter {
	return &limiter{max: max, order: list.New(), byKey: make(map[string]*list.Element)}
}

// allow takes one token for key; when none is left it says how long until one is.
func (l *limiter) allow(key string, now time.Time) (bool, time.Duration) {
	return l.allowN(key, 1, now)
}

// allowN takes n tokens for key.
func (l *limiter) allowN(key string, n int, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var e *limiterEntry
	if el, ok := l.byKey[key]; ok {
		l.order.MoveToFront(el)
		e = el.Value.(*limiterEntry)
	} else {
		if l.order.Len() >= l.max {
			oldest := l.order.Back()
			l.order.Remove(oldest)
			delete(l.byKey, oldest.Value.(*limiterEntry).key)
		}
		e = &limiterEntry{key: key, lim: rate.NewLimiter(l.limit, l.burst)}
		l.byKey[key] = l.order.PushFront(e)
	}
	r := e.lim.ReserveN(now, n)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// set changes the rate and burst of the table and of every bucket in it.
func (l *limiter) set(limit rate.Limit, burst int, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.limit == limit && l.burst == burst {
		return
	}
	l.limit, l.burst = limit, burst
	for el := l.order.Front(); el != nil; el = el.Next() {
		lim := el.Value.(*limiterEntry).lim
		lim.SetLimitAt(now, limit)
		lim.SetBurstAt(now, burst)
	}
}

// tokens is how many tokens key has at now, without taking one or adding
// the key: burst for a key not tracked.
func (l *limiter) tokens(key string, now time.Time) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.byKey[key]; ok {
		return el.Value.(*limiterEntry).lim.TokensAt(now)
	}
	return float64(l.burst)
}

// size is the number of keys tracked.
func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.order.Len()
}
