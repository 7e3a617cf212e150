package appliance

import "errors"

// ErrDataInUse is returned when another process holds the data directory's store.
var ErrDataInUse = errors.New("data directory is in use by another securechat server")

// ErrClosed is returned for a write to a store that is closed or closing.
var ErrClosed = errors.New("store is closed")

// errBanned refuses a connection from a banned address.
var errBanned = errors.New("address banned")

// errRateLimited refuses a connection over the per-IP connection rate.
var errRateLimited = errors.New("too many connections")
