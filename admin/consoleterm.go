package admin

import (
	"context"
	"io"
	"os"

	"golang.org/x/term"
)

// Terminal is the console's line editor on the server's terminal
// (golang.org/x/term): it shows the prompt and echoes what the operator
// types. Whatever else is written through it while the console waits at
// its prompt — the server's log — goes above the prompt, which is drawn
// again with the line typed so far, instead of overwriting it.
//
// It needs the terminal in non-canonical mode without echo (keys arrive
// as typed, and it echoes them); signals stay on, so Ctrl-C still stops
// the server. Setting that mode and restoring it is the caller's (the
// terminal helpers of cli).
type Terminal struct {
	f *os.File
	t *term.Terminal
}

// NewTerminal makes the line editor on the terminal in, writing to out
// (the same terminal).
func NewTerminal(in *os.File, out io.Writer) *Terminal {
	return &Terminal{f: in, t: term.NewTerminal(struct {
		io.Reader
		io.Writer
	}{in, out}, consolePrompt)}
}

// Write writes p above the prompt and what is typed, and draws them again
// below it.
func (t *Terminal) Write(p []byte) (int, error) { return t.t.Write(p) }

// ConsoleTerminal is Console on t: in's output must be t too, so that a
// command's output and the log keep out of each other's way. Ctrl-D on an
// empty line leaves the console, as EOF does.
func (in *Interpreter) ConsoleTerminal(ctx context.Context, t *Terminal) error {
	return in.console(ctx, consoleInput{
		read: func() (string, error) {
			if w, h, err := term.GetSize(int(t.f.Fd())); err == nil {
				t.t.SetSize(w, h) // it may have changed since the last line
			}
			return t.t.ReadLine()
		},
		// The console's last words replace the prompt rather than follow
		// a copy of it.
		end: func() { t.t.SetPrompt("") },
	})
}
