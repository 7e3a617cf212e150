package storetest

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/securechat/securechat/chat"
)

// The crash test runs the test binary again as a child that appends to the
// store in a loop and prints the id of every append once it has returned;
// the parent kills it with SIGKILL in mid-stream, reopens the store and
// checks that every acknowledged message is there, to every recipient, and
// that every entry is whole. Every other message is a group message, whose
// shared payload and reference count commit with its entries (Verify
// checks the counts).

// envCrashDir, when set, makes the Crash test the child, appending to the
// store in that directory.
const envCrashDir = "SECURECHAT_STORETEST_CRASH_DIR"

const (
	crashKillAfter = 200   // acknowledged appends before the kill
	crashMax       = 50000 // the child gives up here, should the parent be gone
	crashWriters   = 4     // concurrent appenders, so commits are grouped
	crashShared    = 3000  // bytes of a group message's shared payload
)

func testCrash(t *testing.T, h *harness) {
	if dir := os.Getenv(envCrashDir); dir != "" {
		crashChild(t, h, dir)
		return
	}
	h.account("alice", 1, 0)
	h.account("bob", 2, 0)
	h.close()

	cmd := exec.Command(os.Args[0], "-test.run="+runPattern(t.Name()), "-test.count=1")
	cmd.Env = append(os.Environ(), envCrashDir+"="+h.dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]bool{}
	killed := false
	sc := bufio.NewScanner(out)
	for sc.Scan() { // lines printed after the kill was sent were acknowledged too
		id, ok := strings.CutPrefix(sc.Text(), "ack ")
		if !ok {
			continue
		}
		acked[id] = true
		if len(acked) >= crashKillAfter && !killed {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("the child ended by itself after %d appends: %v\n%s", len(acked), err, stderr.Bytes())
	}
	t.Logf("child killed after %d acknowledged appends", len(acked))

	h.s = h.open(t, h.dir, h.bounds)
	if err := h.s.Verify(); err != nil {
		t.Fatalf("store damaged by the crash: %v", err)
	}
	ids := map[chat.Device]map[string]bool{}
	for _, d := range []chat.Device{bob1, bob2} {
		ids[d] = map[string]bool{}
		for _, e := range h.pending(d) {
			whole := bytes.Equal(e.Payload, payloadFor(e.MessageID, d))
			if e.Group != nil {
				whole = len(e.Payload) == 0 && bytes.Equal(e.Shared, sharedFor(e.MessageID, crashShared))
			}
			if e.From != alice1 || !whole {
				t.Fatalf("%v: entry %d is not whole: from %v, payload %q, shared %d bytes", d, e.Seq, e.From, e.Payload, len(e.Shared))
			}
			ids[d][hex.EncodeToString(e.MessageID)] = true
		}
	}
	for id := range acked {
		if !ids[bob1][id] || !ids[bob2][id] {
			t.Errorf("acknowledged message %s lost (bob/1 %v, bob/2 %v)", id, ids[bob1][id], ids[bob2][id])
		}
	}
	// A message's entries commit together: each device has the same ones.
	for id := range ids[bob1] {
		if !ids[bob2][id] {
			t.Errorf("message %s reached bob/1 but not bob/2", id)
		}
	}
	if len(ids[bob2]) != len(ids[bob1]) {
		t.Errorf("bob/1 has %d messages, bob/2 %d", len(ids[bob1]), len(ids[bob2]))
	}
}

// crashChild appends until it is killed.
func crashChild(t *testing.T, h *harness, dir string) {
	s := h.open(t, dir, h.bounds)
	var next atomic.Uint64
	var mu sync.Mutex // one line per write
	var wg sync.WaitGroup
	for range crashWriters {
		wg.Go(func() {
			for {
				n := next.Add(1)
				if n > crashMax {
					return
				}
				at := t0.Add(time.Duration(n) * time.Millisecond)
				m := message(alice1, n, at, bob1, bob2)
				if n%2 == 0 {
					m = groupMessage(alice1, n, at, groupID(byte(n%5)), crashShared, bob1, bob2)
				}
				if _, err := s.Append(h.ctx, m); err != nil {
					t.Errorf("append %d: %v", n, err)
					return
				}
				mu.Lock()
				_, err := fmt.Fprintf(os.Stdout, "ack %x\n", m.ID)
				mu.Unlock()
				if err != nil {
					return // the parent is gone
				}
			}
		})
	}
	wg.Wait()
	t.Errorf("not killed after %d appends", crashMax)
}

// runPattern is a -test.run pattern matching exactly the test named name.
func runPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}
