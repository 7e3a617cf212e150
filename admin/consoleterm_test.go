package admin

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for the console and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func waitOutput(t *testing.T, out *lockedBuffer, what string, cond func(string) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond(out.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; output %q", what, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestConsoleTerminalLogAbovePrompt: a log line written while the console
// waits with a half-typed command goes above the prompt, which is drawn
// again with what was typed; finishing the line runs the whole command.
func TestConsoleTerminalLogAbovePrompt(t *testing.T) {
	keys, typist, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer typist.Close()
	f := &recServer{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	out := &lockedBuffer{}
	term := NewTerminal(keys, out)
	in := NewInterpreter(f, term, nil)
	done := make(chan error, 1)
	go func() { done <- in.ConsoleTerminal(context.Background(), term) }()

	waitOutput(t, out, "the prompt", func(s string) bool { return strings.HasSuffix(s, consolePrompt) })
	typist.WriteString("sta")
	waitOutput(t, out, "the echo", func(s string) bool { return strings.HasSuffix(s, consolePrompt+"sta") })
	term.Write([]byte("time=now level=INFO msg=registered user=zed\n"))
	// The cursor goes back to the start of the prompt line, which is erased
	// (ESC [ K), the log line written there, and the prompt and "sta"
	// drawn below it.
	waitOutput(t, out, "the prompt below the log", func(s string) bool {
		return strings.HasSuffix(s, consolePrompt+"sta\x1b[15D\x1b[Ktime=now level=INFO msg=registered user=zed\r\n"+consolePrompt+"sta")
	})
	typist.WriteString("ts\r")
	waitOutput(t, out, "the stats", func(s string) bool { return strings.Contains(s, "server key") })
	typist.WriteString("\x04") // Ctrl-D on an empty line
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Ctrl-D did not end the console")
	}
	if got := strings.Join(f.calls, "; "); got != "Snapshot()" {
		t.Errorf("calls %q, want the one stats", got)
	}
	if o := out.String(); !strings.HasSuffix(o, consoleLeft+"\r\n") || strings.HasSuffix(strings.TrimSuffix(o, consoleLeft+"\r\n"), consolePrompt) {
		t.Errorf("the console's last words: %q", o[max(0, len(o)-200):])
	}
}
