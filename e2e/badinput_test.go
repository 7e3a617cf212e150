package e2e

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/securechat/securechat/transport"
)

// TestBadInput: every kind of bad input gets a clear one-line error, the
// server keeps serving, and a message queued before is still delivered.
func TestBadInput(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	alice, bob := register(t, s, "alice"), register(t, s, "bob")
	alice.send(t, "bob", "queued before the bad input")

	t.Run("unknown recipient", func(t *testing.T) {
		fails(t, 1, `no such user "carol"`, nil, "send", "--home", alice.home, "--to", "carol", "hi")
	})
	t.Run("invalid recipient name", func(t *testing.T) {
		fails(t, 1, "may hold only", nil, "send", "--home", alice.home, "--to", "c a r o l", "hi")
	})
	t.Run("wrong password", func(t *testing.T) {
		fails(t, 1, "authentication failed", []string{"SECURECHAT_PASSWORD=not the password"},
			"login", "--server", s.Addr, "--server-key", s.FP, "--user", "alice", "--home", t.TempDir())
	})
	t.Run("unknown user login", func(t *testing.T) {
		fails(t, 1, "authentication failed", pwEnv,
			"login", "--server", s.Addr, "--server-key", s.FP, "--user", "nobody", "--home", t.TempDir())
	})
	t.Run("duplicate user name", func(t *testing.T) {
		fails(t, 1, "user name is taken", pwEnv,
			"register", "--server", s.Addr, "--server-key", s.FP, "--user", "ALICE", "--home", t.TempDir())
	})
	t.Run("invalid user name", func(t *testing.T) {
		for _, name := range []string{"", "has space", "ünï", "\u212Aelvin", strings.Repeat("x", 33), "<script>"} {
			r := run(t, pwEnv, "", "register", "--server", s.Addr, "--server-key", s.FP, "--user", name, "--home", t.TempDir())
			if r.Code == 0 || strings.Count(strings.TrimSpace(r.Stderr), "\n") > 0 || r.Stderr == "" {
				t.Errorf("name %q: exit %d, stderr %q", name, r.Code, r.Stderr)
			}
		}
	})
	t.Run("short password", func(t *testing.T) {
		fails(t, 1, "at least 8 characters", []string{"SECURECHAT_PASSWORD=short"},
			"register", "--server", s.Addr, "--user", "shorty", "--home", t.TempDir())
	})
	t.Run("wrong server key", func(t *testing.T) {
		wrong := strings.Repeat("ab", 32)
		r := fails(t, 1, "server key does not match", pwEnv,
			"register", "--server", s.Addr, "--server-key", wrong, "--user", "mallory", "--home", t.TempDir())
		if !strings.Contains(r.Stderr, groupedFP(wrong)) || !strings.Contains(r.Stderr, groupedFP(s.FP)) {
			t.Errorf("error does not name both fingerprints: %s", r.Stderr)
		}
	})
	t.Run("malformed server key", func(t *testing.T) {
		fails(t, 2, "64 hex digits", pwEnv, "register", "--server", s.Addr, "--server-key", "abc", "--user", "x", "--home", t.TempDir())
	})
	t.Run("pinned key changed", func(t *testing.T) {
		// Another server on a fresh data directory has another key; a home
		// pinned to the first refuses it.
		other := startServer(t)
		home := t.TempDir()
		ok(t, pwEnv, "register", "--server", other.Addr, "--user", "pinned", "--home", home)
		other.stop()
		os.RemoveAll(other.data)
		other.start() // same port, new key
		r := fails(t, 1, "server key does not match", nil, "send", "--home", home, "--to", "pinned", "hi")
		if !strings.Contains(r.Stderr, groupedFP(other.FP)) {
			t.Errorf("error does not name the new fingerprint: %s", r.Stderr)
		}
	})
	t.Run("usage", func(t *testing.T) {
		fails(t, 2, "--to is required", nil, "send", "--home", alice.home, "hi")
		fails(t, 2, "no message text", nil, "send", "--home", alice.home, "--to", "bob")
		fails(t, 2, "unknown command", nil, "frobnicate")
		fails(t, 2, "recv: unknown flag --bogus", nil, "recv", "--bogus")
		fails(t, 2, "recv: unknown flag --jsn; did you mean --json?", nil, "recv", "--jsn")
	})
	t.Run("not registered", func(t *testing.T) {
		fails(t, 1, "no account yet", nil, "send", "--home", t.TempDir(), "--to", "bob", "hi")
	})
	t.Run("home already registered", func(t *testing.T) {
		fails(t, 1, "already holds the account alice (device 1): use another --home", pwEnv, "register", "--server", s.Addr, "--user", "other", "--home", alice.home)
	})
	t.Run("message too long", func(t *testing.T) {
		fails(t, 1, "too long", nil, "send", "--home", alice.home, "--to", "bob", strings.Repeat("x", 70<<10))
	})

	s.alive()
	alice.send(t, "bob", "after the bad input")
	got := bob.recv(t, "0s")
	if want := []string{"queued before the bad input", "after the bad input"}; !slices.Equal(texts(got), want) {
		t.Fatalf("bob got %q, want %q", texts(got), want)
	}
}

// TestMalformedFrames speaks raw frames to the server: bad bodies get an
// Error response on a connection that stays usable; broken framing closes
// that one connection with the reason; the server serves on.
func TestMalformedFrames(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	alice, bob := register(t, s, "alice"), register(t, s, "bob")
	fp, err := transport.ParseFingerprint(s.FP)
	if err != nil {
		t.Fatal(err)
	}
	dial := func(t *testing.T) *transport.Conn {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := transport.Dial(ctx, s.Addr, &transport.Pinner{Pin: fp})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(transport.CloseNormal, "") })
		return c
	}
	expectError := func(t *testing.T, c *transport.Conn, id uint32, code transport.ErrorCode) {
		t.Helper()
		f, err := c.ReadFrame()
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		var e transport.Error
		if f.Code != transport.CodeError || f.ID != id || transport.Unmarshal(f.Body, &e) != nil || e.Code != code {
			t.Fatalf("got %v id %d %q, want Error %v for id %d", f.Code, f.ID, f.Body, code, id)
		}
		if e.Message == "" || strings.Contains(e.Message, "\n") {
			t.Errorf("error message %q is not one clear line", e.Message)
		}
	}
	ping := func(t *testing.T, c *transport.Conn, id uint32) {
		t.Helper()
		if err := c.WriteFrame(transport.CodePing, id, &transport.Empty{}); err != nil {
			t.Fatal(err)
		}
		f, err := c.ReadFrame()
		if err != nil || f.Code != transport.CodeOK || f.ID != id {
			t.Fatalf("ping: %v %v", f, err)
		}
	}
	closedWith := func(t *testing.T, c *transport.Conn, want string) {
		t.Helper()
		for {
			_, err := c.ReadFrame()
			if err == nil {
				continue
			}
			var ce *transport.ClosedError
			if !errors.As(err, &ce) || ce.Code != transport.CloseProtocol || !strings.Contains(ce.Reason, want) {
				t.Fatalf("connection ended with %v, want a protocol close mentioning %q", err, want)
			}
			return
		}
	}

	t.Run("garbage body", func(t *testing.T) {
		c := dial(t)
		c.WriteFrames(transport.Frame{Code: transport.CodeRegister, ID: 7, Body: []byte{0xff, 0xff, 0xff}})
		expectError(t, c, 7, transport.ErrBadRequest)
		ping(t, c, 8)
	})
	t.Run("unknown critical field", func(t *testing.T) {
		c := dial(t)
		c.WriteFrames(transport.Frame{Code: transport.CodePing, ID: 3, Body: []byte{0x0b, 0x01, 0x00}}) // field 5, critical
		expectError(t, c, 3, transport.ErrBadRequest)
		ping(t, c, 4)
	})
	t.Run("unknown code", func(t *testing.T) {
		c := dial(t)
		c.WriteFrames(transport.Frame{Code: 999, ID: 5})
		expectError(t, c, 5, transport.ErrBadRequest)
		ping(t, c, 6)
	})
	t.Run("send before auth", func(t *testing.T) {
		c := dial(t)
		c.WriteFrame(transport.CodeSend, 9, &transport.Send{MessageID: make([]byte, 16)})
		expectError(t, c, 9, transport.ErrUnauthorized)
	})
	t.Run("auth with a forged signature", func(t *testing.T) {
		c := dial(t)
		c.WriteFrame(transport.CodeAuth, 2, &transport.Auth{User: "alice", Device: 1, Signature: make([]byte, 64)})
		expectError(t, c, 2, transport.ErrUnauthorized)
	})
	t.Run("oversized frame", func(t *testing.T) {
		c := dial(t)
		// Declares 2 GiB; the server must refuse without reading or allocating it.
		c.WriteRaw(binary.BigEndian.AppendUint32(nil, 1<<31))
		closedWith(t, c, "exceeds the limit")
	})
	t.Run("frame shorter than its header", func(t *testing.T) {
		c := dial(t)
		c.WriteRaw([]byte{0, 0, 0, 2, 1, 0})
		closedWith(t, c, "shorter than its header")
	})
	t.Run("bad version", func(t *testing.T) {
		c := dial(t)
		c.WriteRaw([]byte{0, 0, 0, 7, 9, 0, 2, 0, 0, 0, 1})
		closedWith(t, c, "unsupported frame version")
	})
	t.Run("not quic at all", func(t *testing.T) {
		u, err := net.Dial("udp", s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		for i := 0; i < 100; i++ {
			u.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		}
	})

	s.alive()
	alice.send(t, "bob", "still serving")
	if got := bob.recv(t, "0s"); len(got) != 1 || got[0].Text != "still serving" {
		t.Fatalf("got %q", texts(got))
	}
}

func TestAuthTimeout(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--auth-timeout", "1s")
	fp, _ := transport.ParseFingerprint(s.FP)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, s.Addr, &transport.Pinner{Pin: fp})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(transport.CloseNormal, "")
	c.WriteFrame(transport.CodePing, 1, &transport.Empty{}) // opens the stream, authenticates nothing
	start := time.Now()
	for {
		if _, err := c.ReadFrame(); err != nil {
			var ce *transport.ClosedError
			if !errors.As(err, &ce) || ce.Code != transport.CloseAuthTimeout {
				t.Fatalf("closed with %v, want the auth timeout", err)
			}
			break
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("closed after %v", d)
	}
}

func TestServerNotRunning(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	alice := register(t, s, "alice")
	s.stop()
	fails(t, 1, "cannot reach server", nil, "send", "--home", alice.home, "--to", "alice", "hi")
	fails(t, 1, "cannot reach server", pwEnv, "register", "--server", s.Addr, "--user", "x", "--home", t.TempDir())
}

func TestSecondInstanceSameDataDir(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	r := fails(t, 1, "in use by another securechat server", nil, "serve", "--listen", "127.0.0.1:0", "--data", s.data)
	_ = r
	s.alive()
	// The first instance's files are intact.
	if b, err := os.ReadFile(filepath.Join(s.data, "listen.addr")); err != nil || strings.TrimSpace(string(b)) != s.Addr {
		t.Errorf("listen.addr after the failed second start: %q %v", b, err)
	}
}

func TestServeFiles(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	st, err := os.Stat(filepath.Join(s.data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("admin.token mode %v, want 0600", st.Mode().Perm())
	}
	if len(s.FP) != 64 {
		t.Errorf("fingerprint %q", s.FP)
	}
	// listen.addr is written once the server is ready, after the banner.
	waitFor(t, "the serve banner", func() bool {
		out := s.stdout.String()
		return strings.Contains(out, s.Addr) && strings.Contains(out, groupedFP(s.FP))
	})
	fails(t, 2, "unexpected argument", nil, "serve", "extra")
	fails(t, 2, "not a duration", nil, "serve", "--data", t.TempDir(), "--mailbox-ttl", "soon")
}
