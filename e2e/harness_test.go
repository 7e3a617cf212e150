// Package e2e tests the real securechat binary end to end: a server process
// on 127.0.0.1 with a temporary data directory, real QUIC and bbolt, and the
// scriptable client commands in temporary homes.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// bin is the securechat binary under test, built once by TestMain.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "securechat-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "securechat")
	args := []string{"build", "-o", bin}
	if os.Getenv("SECURECHAT_E2E_RACE") != "" {
		args = append(args, "-race") // a race-detector build of the binary under test
	}
	build := exec.Command("go", append(args, "github.com/securechat/securechat")...)
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building securechat:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer is a bytes.Buffer safe for a process to write while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// server is a running `securechat serve` process.
type server struct {
	t      *testing.T
	data   string
	listen string // address to (re)bind
	args   []string
	cmd    *exec.Cmd
	exited chan struct{}
	stdout *syncBuffer
	stderr *syncBuffer // logs of every run, appended
	Addr   string
	FP     string
}

// startServer runs a server on 127.0.0.1 with a fresh data directory.
func startServer(t *testing.T, args ...string) *server {
	t.Helper()
	s := &server{t: t, data: filepath.Join(t.TempDir(), "data"), listen: "127.0.0.1:0", args: args, stderr: &syncBuffer{}}
	s.start()
	t.Cleanup(func() {
		s.stop()
		if strings.Contains(s.stderr.String(), "DATA RACE") || strings.Contains(s.stderr.String(), "panic:") {
			t.Errorf("the server reported a data race or a panic")
		}
		if t.Failed() {
			t.Logf("server log:\n%s", s.stderr.String())
		}
	})
	return s
}

// startServerOn runs a server with a fresh data directory (so another
// key) on addr, which another server of the test may have used.
func startServerOn(t *testing.T, addr string, args ...string) *server {
	t.Helper()
	s := &server{t: t, data: filepath.Join(t.TempDir(), "data"), listen: addr, args: args, stderr: &syncBuffer{}}
	s.start()
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("log of the server on %s:\n%s", addr, s.stderr.String())
		}
	})
	return s
}

func (s *server) start() {
	s.t.Helper()
	args := append([]string{"serve", "--listen", s.listen, "--data", s.data, "--admin", "127.0.0.1:0", "--log-level", "debug"}, s.args...)
	// listen.addr appears when the server is ready; a copy left by a crash
	// would say so too early.
	os.Remove(filepath.Join(s.data, "listen.addr"))
	s.cmd = exec.Command(bin, args...)
	s.stdout = &syncBuffer{}
	s.cmd.Stdout, s.cmd.Stderr = s.stdout, s.stderr
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.exited = make(chan struct{})
	go func() { s.cmd.Wait(); close(s.exited) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(s.data, "listen.addr"))
		if err == nil && len(b) > 0 {
			s.Addr = strings.TrimSpace(string(b))
			break
		}
		select {
		case <-s.exited:
			s.t.Fatalf("server exited at start: %s", s.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("server did not start: %s", s.stderr.String())
		}
	}
	fp, err := os.ReadFile(filepath.Join(s.data, "server.fingerprint"))
	if err != nil {
		s.t.Fatal(err)
	}
	s.FP = strings.TrimSpace(string(fp))
	s.listen = s.Addr // a restart binds the same port, which clients have stored
}

// stop shuts the server down with SIGTERM and waits for it.
func (s *server) stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
		s.t.Errorf("server did not stop within 20s of SIGTERM")
	}
	s.cmd = nil
}

func (s *server) restart() {
	s.t.Helper()
	s.stop()
	s.start()
}

// alive fails the test if the server process has exited.
func (s *server) alive() {
	s.t.Helper()
	select {
	case <-s.exited:
		s.t.Fatalf("server exited: %s", s.stderr.String())
	default:
	}
}

// result is a finished command.
type result struct {
	Stdout, Stderr string
	Code           int
}

// run runs the binary with args and extra environment.
func run(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(append(os.Environ(), "SECURECHAT_PASSPHRASE="+passphrase), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // no controlling terminal: never prompt
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{Stdout: out.String(), Stderr: errb.String()}
	if strings.Contains(r.Stderr, "DATA RACE") || strings.Contains(r.Stderr, "panic:") {
		t.Errorf("securechat %v reported a data race or a panic:\n%s", args, r.Stderr)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
	default:
		t.Fatalf("securechat %v: %v", args, err)
	}
	return r
}

// ok runs a command that must succeed.
func ok(t *testing.T, env []string, args ...string) result {
	t.Helper()
	r := run(t, env, "", args...)
	if r.Code != 0 {
		t.Fatalf("securechat %s: exit %d: %s", strings.Join(args, " "), r.Code, r.Stderr)
	}
	return r
}

// fails runs a command that must fail with code and a one-line error on
// stderr containing want.
func fails(t *testing.T, code int, want string, env []string, args ...string) result {
	t.Helper()
	r := run(t, env, "", args...)
	if r.Code != code {
		t.Fatalf("securechat %s: exit %d, want %d; stderr: %s", strings.Join(args, " "), r.Code, code, r.Stderr)
	}
	msg := strings.TrimRight(r.Stderr, "\n")
	if strings.Contains(msg, "\n") {
		t.Errorf("securechat %s: error is not one line: %q", strings.Join(args, " "), r.Stderr)
	}
	if !strings.Contains(msg, want) {
		t.Errorf("securechat %s: error %q does not mention %q", strings.Join(args, " "), msg, want)
	}
	if strings.Contains(r.Stderr, "panic") || strings.Contains(r.Stderr, "goroutine ") {
		t.Errorf("securechat %s panicked: %s", strings.Join(args, " "), r.Stderr)
	}
	return r
}

const (
	password   = "correct horse battery"
	passphrase = "home sealing passphrase"
)

var pwEnv = []string{"SECURECHAT_PASSWORD=" + password}

// user is a registered client home.
type user struct {
	name, home string
}

func register(t *testing.T, s *server, name string) user {
	t.Helper()
	home := filepath.Join(t.TempDir(), name)
	ok(t, pwEnv, "register", "--server", s.Addr, "--server-key", s.FP, "--user", name, "--home", home)
	return user{name: name, home: home}
}

func (u user) send(t *testing.T, to, text string) {
	t.Helper()
	ok(t, nil, "send", "--home", u.home, "--to", to, text)
}

// message is one line of recv --json.
type message struct {
	ID     string `json:"id"`
	From   string `json:"from"`
	Group  string `json:"group"`
	Text   string `json:"text"`
	SentAt string `json:"sent_at"`
	Kind   string `json:"kind"`
}

func parseMessages(t *testing.T, out string) []message {
	t.Helper()
	var msgs []message
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var m message
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("recv --json line %q: %v", line, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

func (u user) recv(t *testing.T, wait string) []message {
	t.Helper()
	r := ok(t, nil, "recv", "--home", u.home, "--json", "--wait", wait)
	return parseMessages(t, r.Stdout)
}

func texts(msgs []message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.Text)
	}
	return out
}
