package boltstore

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/appliance/store"
)

// A damaged page makes bbolt panic ("assertion failed: Page expected to
// be: 40, but self identifies as …") or fault on a page id past the file.
// No request may crash the server for it (docs/design.md §4.2): every read
// transaction and the writer's transactions run under recoverDamage, with
// faults turned into panics, and a panic becomes a *store.DamagedError for
// that operation alone. bbolt rolls the transaction back on the way out,
// so the store goes on serving what it can read.

// view runs fn in a read transaction; op names the operation for the
// error and the operator's event.
func (s *Store) view(op string, fn func(tx *bolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer s.recoverDamage(op, &err)
	return s.db.View(fn)
}

// recoverDamage, deferred, turns a panic into a *store.DamagedError in
// *err and reports it through Options.OnDamage.
func (s *Store) recoverDamage(op string, err *error) {
	r := recover()
	if r == nil {
		return
	}
	d := &store.DamagedError{Op: op, Cause: strings.TrimPrefix(fmt.Sprint(r), "assertion failed: ")}
	*err = d
	if s.onDamage != nil {
		s.onDamage(d)
	}
}

// callerName is the name of the Store method that called the function
// calling it: what a queued write is reported as.
func callerName() string {
	pc, _, _, ok := runtime.Caller(2)
	if !ok {
		return "write"
	}
	name := runtime.FuncForPC(pc).Name()
	name = name[strings.LastIndexByte(name, '.')+1:]
	return strings.TrimSuffix(name, "-fm")
}

// runOp runs one write of a batch, a panic in it becoming its error: the
// writer reports it to that write alone and runs the others again.
func (s *Store) runOp(op *writeOp, tx *bolt.Tx) (err error) {
	defer s.recoverDamage(op.name, &err)
	return op.fn(tx)
}
