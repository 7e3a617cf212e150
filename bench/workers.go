package main

import (
	"context"
	"sync"
	"sync/atomic"
)

// Concurrency helpers shared by the two load phases.

// connectParallelism bounds concurrent dials: enough to set up quickly,
// few enough not to trip the server's handshake and idle timeouts on a
// small machine.
const connectParallelism = 16

// failure records the first error of a phase and cancels the phase's
// context with it, so that every other worker stops.
type failure struct {
	cancel context.CancelCauseFunc

	mu    sync.Mutex
	first error
}

func newFailure(ctx context.Context) (context.Context, *failure) {
	ctx, cancel := context.WithCancelCause(ctx)
	return ctx, &failure{cancel: cancel}
}

// report records err if it is the first and stops the phase.
func (f *failure) report(err error) {
	f.mu.Lock()
	if f.first == nil {
		f.first = err
	}
	f.mu.Unlock()
	f.cancel(err)
}

// err is the first reported error.
func (f *failure) err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.first
}

// stopFlag tells the closed loops to finish their current operation and
// return. Workers poll it between operations.
type stopFlag struct{ b atomic.Bool }

func (s *stopFlag) set()        { s.b.Store(true) }
func (s *stopFlag) isSet() bool { return s.b.Load() }

// parallel runs fn(0) … fn(n-1) with at most limit running at once and
// returns the first error; after an error, or when ctx ends, the calls not
// yet started are skipped.
func parallel(ctx context.Context, n, limit int, fn func(i int) error) error {
	ctx, fail := newFailure(ctx)
	defer fail.cancel(nil)
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(i); err != nil {
				fail.report(err)
			}
		})
	}
	wg.Wait()
	if err := fail.err(); err != nil {
		return err
	}
	return ctx.Err()
}
