package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/transport"
)

func testServer(t *testing.T) *Server {
	t.Helper()
	srv, err := New(Config{Listen: "127.0.0.1:0", Data: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// TestHandlerTable pins the table to protocol.md §5: only Register, Login,
// Auth, CheckName, LinkStart and Ping before authentication, the authenticating requests never
// after it, and the rate limits of the requests that have one.
func TestHandlerTable(t *testing.T) {
	want := map[transport.Code]struct {
		auth  authRule
		limit limitClass
	}{
		transport.CodePing:        {anyTime, noLimit},
		transport.CodeRegister:    {beforeAuth, limitRegister},
		transport.CodeLogin:       {beforeAuth, noLimit},
		transport.CodeAuth:        {beforeAuth, noLimit},
		transport.CodeCheckName:   {beforeAuth, limitName},
		transport.CodeDevices:     {afterAuth, limitLookup},
		transport.CodeSend:        {afterAuth, limitMessages},
		transport.CodeAck:         {afterAuth, limitAck},
		transport.CodePublishKeys: {afterAuth, limitKeys},
		transport.CodeFetchKeys:   {afterAuth, limitKeyFetch},
		transport.CodeIdentity:    {afterAuth, limitLookup},
		// protocol.md §5.4
		transport.CodeLinkStart:         {beforeAuth, limitLinkStart},
		transport.CodeLinkFind:          {afterAuth, limitLink},
		transport.CodeLinkApprove:       {afterAuth, limitLink},
		transport.CodePublishDeviceList: {afterAuth, limitLink},
		transport.CodeRevokeDevice:      {afterAuth, limitLink},
		transport.CodeAccountDevices:    {afterAuth, limitLookup},
		transport.CodeRenameDevice:      {afterAuth, limitLink},
		// protocol.md §6.8 (blobs.go)
		transport.CodeBlobLimits: {afterAuth, limitLookup},
		transport.CodeBlobCreate: {afterAuth, limitMessages},
		transport.CodeBlobStatus: {afterAuth, limitLookup},
		transport.CodeBlobDone:   {afterAuth, limitMessages},
	}
	for code, w := range want {
		r, ok := routes[code]
		if !ok || r.handle == nil || r.auth != w.auth || r.limit != w.limit || r.concurrent != (code == transport.CodeSend) || r.notify != (code == transport.CodeSend || code == transport.CodeAck) {
			t.Errorf("%v: %+v, want auth %d limit %d", code, r, w.auth, w.limit)
		}
	}
	if len(routes) != len(want) {
		t.Errorf("%d routes, want %d", len(routes), len(want))
	}
}

// TestTakeMessagesLimit counts Sends against both the messages and the
// bytes limits, per account.
func TestTakeMessagesLimit(t *testing.T) {
	srv := testServer(t)
	l := srv.currentLimits()
	l.MessageRate, l.MessageBurst = 0, 3
	l.ByteRate, l.ByteBurst = 0, transport.MaxPayload
	if err := srv.SetLimits(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	ss := &session{srv: srv, ip: "192.0.2.1", dev: chat.DeviceOf("bob", 1)}
	if e := ss.take(limitMessages, 1, transport.MaxPayload+1); e == nil || e.Code != transport.ErrRateLimited {
		t.Errorf("more bytes than the burst: %v", e)
	}
	for i := range 2 {
		if e := ss.take(limitMessages, 1, 10); e != nil {
			t.Fatalf("send %d: %v", i, e)
		}
	}
	if e := ss.take(limitMessages, 1, 10); e == nil || e.Code != transport.ErrRateLimited || e.RetryAfterMS == 0 {
		t.Errorf("fourth send of a burst of 3: %v", e)
	}
	other := &session{srv: srv, ip: "192.0.2.1", dev: chat.DeviceOf("carol", 1)}
	if e := other.take(limitMessages, 1, 10); e != nil {
		t.Errorf("another account is limited by bob's sends: %v", e)
	}
	if e := ss.take(noLimit, 1, 1<<30); e != nil {
		t.Errorf("no limit: %v", e)
	}
	if got := srv.stats.Limited.Load(); got != 2 {
		t.Errorf("%d refusals counted, want 2", got)
	}
}

// TestModerationThroughChanges: bans, mutes and limits reach a second
// follower of the change feed in order, and the server applies them
// through the same feed.
func TestModerationThroughChanges(t *testing.T) {
	srv := testServer(t)
	ctx := context.Background()
	var seen []Change
	srv.changes.Subscribe(func(c Change) { seen = append(seen, c) })
	for _, name := range []string{"bob", "mallory"} {
		if err := srv.store.CreateAccount(ctx, store.NewAccount{Name: name, PasswordHash: "x", DeviceKey: make([]byte, 32), Now: srv.cfg.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := srv.Ban(ctx, "user:nobody", "spam", time.Hour); err == nil || !strings.Contains(err.Error(), "no such user") {
		t.Errorf("ban of an account that does not exist: %v", err)
	}
	if _, err := parseBanTarget("bob"); err == nil || !strings.Contains(err.Error(), "user:bob") {
		t.Errorf("ban bob: %v, want a hint to write user:bob", err)
	}
	if _, err := srv.Ban(ctx, "user:mallory", "spam", time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, ok := srv.bans.userBanned("mallory", srv.cfg.Now()); !ok {
		t.Error("ban not applied")
	}
	if err := srv.Unban(ctx, "user:mallory"); err != nil {
		t.Fatal(err)
	}
	if err := srv.Mute(ctx, "bob", 0); err != nil {
		t.Fatal(err)
	}
	if _, muted := srv.mutes.muted("bob", srv.cfg.Now()); !muted {
		t.Error("mute not applied")
	}
	if err := srv.Unmute(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	l := srv.currentLimits()
	l.MessageBurst++
	if err := srv.SetLimits(ctx, l); err != nil {
		t.Fatal(err)
	}
	if srv.currentLimits().MessageBurst != l.MessageBurst {
		t.Error("limits not applied")
	}
	kinds := []ChangeKind{ChangeBan, ChangeUnban, ChangeMute, ChangeUnmute, ChangeLimits}
	if len(seen) != len(kinds) {
		t.Fatalf("follower saw %d changes, want %d: %+v", len(seen), len(kinds), seen)
	}
	for i, k := range kinds {
		if seen[i].Kind != k {
			t.Errorf("change %d is %v, want %v", i, seen[i].Kind, k)
		}
	}
	if seen[0].Ban.Target != "user:mallory" || seen[0].Ban.Reason != "spam" || seen[2].User != "bob" || seen[4].Limits.MessageBurst != l.MessageBurst {
		t.Errorf("changes carry the wrong state: %+v", seen)
	}
	// A store refusal publishes nothing.
	if err := srv.Unban(ctx, "user:mallory"); err == nil {
		t.Error("unban of no ban")
	}
	if err := srv.Mute(ctx, "nobody", 0); !errors.Is(err, store.ErrNoSuchUser) {
		t.Errorf("mute of nobody: %v", err)
	}
	if len(seen) != len(kinds) {
		t.Errorf("refused commands published %d changes", len(seen)-len(kinds))
	}
}

// TestTakeKeyFetchRetryFloor: a refused key fetch tells the client to wait
// at least 1 ms, like every other rate limit, even when the bucket refills
// sooner (a retry_after_ms of 0 would read as "absent").
func TestTakeKeyFetchRetryFloor(t *testing.T) {
	srv := testServer(t)
	l := srv.currentLimits()
	l.KeyFetchRate, l.KeyFetchBurst = 4000, 1 // a token every 0.25 ms
	if err := srv.SetLimits(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	ss := &session{srv: srv, ip: "192.0.2.1", dev: chat.DeviceOf("bob", 1)}
	if e := ss.take(limitKeyFetch, 1, 1); e != nil {
		t.Fatalf("first fetch: %v", e)
	}
	e := ss.take(limitKeyFetch, 1, 1)
	if e == nil || e.Code != transport.ErrRateLimited || e.RetryAfterMS < 1 {
		t.Errorf("second fetch of a burst of 1: %+v", e)
	}
}

// TestStorageFull: a full disk is told to the sender as the store's total
// bound is, "storage full" with "server storage is full, try again later"
// (not "internal server error"); the server notes it once in its log and
// events, counts every refusal, refuses registrations and uploads while
// full, and takes them again once its disk has room.
func TestStorageFull(t *testing.T) {
	var logged strings.Builder
	log := slog.New(slog.NewTextHandler(&logged, nil))
	disk := fmt.Errorf("commit: %w", &os.PathError{Op: "write", Path: "server.db", Err: syscall.ENOSPC})
	for _, err := range []error{disk, store.ErrStoreFull} {
		if e := wireError(log, err); e.Code != transport.ErrStorageFull || e.Message != "server storage is full, try again later" {
			t.Errorf("%v: %d %q", err, e.Code, e.Message)
		}
	}
	srv, err := New(Config{Listen: "127.0.0.1:0", Data: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ss := &session{srv: srv, log: log}
	for range 3 {
		if e := ss.wireError(disk); e.Code != transport.ErrStorageFull {
			t.Errorf("%d %q", e.Code, e.Message)
		}
	}
	if !srv.storageFull() || srv.stats.StorageFull.Load() != 3 {
		t.Errorf("full %v, refusals %d", srv.storageFull(), srv.stats.StorageFull.Load())
	}
	if !strings.HasPrefix(logged.String(), "time=") || strings.Count(logged.String(), "level=ERROR msg=\"storage full") != 1 {
		t.Errorf("logged %q", logged.String())
	}
	if events, _ := srv.Events(context.Background(), 10); len(events) != 1 || events[0].Kind != chat.EventStorageFull {
		t.Errorf("events %+v", events)
	}
	snap, _ := srv.Snapshot(context.Background()) // looks at the disk: the test's has room
	if srv.storageFull() || snap.StorageFull || snap.StorageFullRefusals != 3 || snap.DiskFree <= 0 || snap.DiskSize < snap.DiskFree {
		t.Errorf("after a look at a disk with room: full %v, snapshot %+v", srv.storageFull(), snap)
	}
	if events, _ := srv.Events(context.Background(), 10); len(events) != 2 || events[0].Kind != chat.EventStorageRecovered {
		t.Errorf("events %+v", events)
	}
}

// TestFailedStartRemovesDataDir: a start that fails before serving
// removes the data directory it made, and only one it made.
func TestFailedStartRemovesDataDir(t *testing.T) {
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	made := filepath.Join(t.TempDir(), "data")
	if _, err := New(Config{Listen: busy.LocalAddr().String(), Data: made, Logger: quiet}); err == nil {
		t.Fatal("started on a busy port")
	}
	if _, err := os.Stat(made); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the failed start left %s: %v", made, err)
	}
	had := t.TempDir()
	if _, err := New(Config{Listen: busy.LocalAddr().String(), Data: had, Logger: quiet}); err == nil {
		t.Fatal("started on a busy port")
	}
	if _, err := os.Stat(had); err != nil {
		t.Errorf("the failed start removed a directory it did not make: %v", err)
	}
	// The admin listener fails in Serve, after New.
	admin, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	made = filepath.Join(t.TempDir(), "data2")
	srv, err := New(Config{Listen: "127.0.0.1:0", Admin: admin.Addr().String(), Data: made, Logger: quiet,
		AdminHandler: func(*Server, string, *slog.Logger) http.Handler { return http.NotFoundHandler() }})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(context.Background()); err == nil {
		t.Fatal("served with the admin port taken")
	}
	if _, err := os.Stat(made); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the failed start left %s: %v", made, err)
	}
}
