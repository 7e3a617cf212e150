package appliance

import (
	"context"
	"errors"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/transport"
)

// A full disk (docs/operations.md §3.1). A write that fails for want of
// space (ENOSPC, EDQUOT from bbolt's write, fsync or growth) fails its
// request with "storage full" (protocol.md §4.1): nothing of it was
// committed, nothing was acknowledged, and the client keeps the message in
// its outbox. The server then counts itself full: it records an event,
// refuses new registrations and uploads, and looks at the free space every
// second until there is room again (diskRoom), when it takes them again
// by itself. Sends are tried all along: a commit may fit in pages the store
// freed.

// diskRoom is the free space at which a full server takes registrations
// and uploads again.
const diskRoom = 1 << 20

// diskState is what the server knows of its data directory's filesystem.
type diskState struct {
	full  atomic.Bool   // a write failed for want of space, and room has not returned
	known atomic.Bool   // free and size were read
	free  atomic.Uint64 // bytes available to the server at the last look
	size  atomic.Uint64 // the filesystem's size
}

// isDiskFull reports whether err is the disk having no room.
func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// storageFullError is the answer to a request refused while the disk is
// full.
func storageFullError() *transport.Error {
	return &transport.Error{Code: transport.ErrStorageFull, Message: store.ErrStoreFull.Error()}
}

// wireError is wireError (handlers.go) for a request of this session: a
// full disk is also noted by the server.
func (ss *session) wireError(err error) *transport.Error {
	if isDiskFull(err) {
		ss.srv.noteDiskFull(err)
	}
	return wireError(ss.log, err)
}

// noteDiskFull counts a write that failed for want of space; the first
// of a spell is logged and recorded.
func (s *Server) noteDiskFull(err error) {
	s.stats.StorageFull.Add(1)
	if s.disk.full.CompareAndSwap(false, true) {
		s.log.Error("storage full: the data directory's disk has no room; sends are refused, and registrations and uploads until there is room again",
			"dir", s.cfg.Data, "err", err)
		s.recordEvent(chat.EventStorageFull, s.cfg.Data, err.Error())
	}
}

// storageFull reports whether the server counts itself full.
func (s *Server) storageFull() bool { return s.disk.full.Load() }

// diskLoop looks at the free space: every second while full, so that the
// server takes registrations and uploads again soon after room returns,
// every ten seconds otherwise (the dashboard reads it afresh).
func (s *Server) diskLoop(ctx context.Context) {
	for {
		s.checkDisk()
		every := 10 * time.Second
		if s.storageFull() {
			every = time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// checkDisk reads the data directory's free space and ends a spell of
// full disk once there is room. Where the free space cannot be read, a
// spell ends at the next look: the next write that finds no room starts
// another.
func (s *Server) checkDisk() {
	free, size, ok := diskSpace(s.cfg.Data)
	if ok {
		s.disk.free.Store(free)
		s.disk.size.Store(size)
		s.disk.known.Store(true)
	}
	if (!ok || free >= diskRoom) && s.disk.full.CompareAndSwap(true, false) {
		s.log.Info("storage has room again: registrations and uploads are taken", "dir", s.cfg.Data, "free", free)
		s.recordEvent(chat.EventStorageRecovered, s.cfg.Data, sizeText(free)+" free")
	}
}
