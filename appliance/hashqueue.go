package appliance

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/securechat/securechat/transport"
)

// hashQueue runs argon2id computations, at most one per CPU at a time, for
// at most max waiting requests (hash_queue). A request whose connection
// closed while it waited is dropped before it hashes (issue 17 point 4):
// a client that pipelines Logins and hangs up costs nothing more. The
// admin's web login has a queue of its own (Server.adminHash), so client
// logins cannot starve it.
type hashQueue struct {
	slots   chan struct{}
	waiting atomic.Int64
	max     int64
}

func newHashQueue(slots, waiting int) *hashQueue {
	return &hashQueue{slots: make(chan struct{}, max(1, slots)), max: int64(max(1, waiting))}
}

// errHashBusy refuses a Register or Login when hash_queue requests already wait.
var errHashBusy = &transport.Error{
	Code:         transport.ErrRateLimited,
	Message:      "server busy checking passwords, retry after 1s",
	RetryAfterMS: uint64(time.Second.Milliseconds()),
}

// do runs fn when a slot is free; it returns errHashBusy when the queue is
// full and ctx's error when ctx ended first, without running fn.
func (q *hashQueue) do(ctx context.Context, fn func()) error {
	if q.waiting.Add(1) > q.max {
		q.waiting.Add(-1)
		return errHashBusy
	}
	select {
	case q.slots <- struct{}{}:
		q.waiting.Add(-1)
	case <-ctx.Done():
		q.waiting.Add(-1)
		return ctx.Err()
	}
	defer func() { <-q.slots }()
	if err := ctx.Err(); err != nil {
		return err // the connection closed while its turn came
	}
	fn()
	return nil
}
