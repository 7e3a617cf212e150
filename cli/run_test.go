package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestMainStatus: the exit statuses of docs/design.md §7, the error on one
// line of stderr.
func TestMainStatus(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		status int
		out    string
		err    string
	}{
		{[]string{"version"}, 0, "securechat v1.2\n", ""},
		{nil, 2, "", "securechat: no command given\n"},
		{[]string{"frobnicate"}, 2, "", "securechat: unknown command \"frobnicate\" (run securechat help)\n"},
		{[]string{"serve", "--max-frame", "1", "--check-config"}, 1, "", "securechat: config: max_frame must be between 64KiB and 64MiB (got 1)\n"},
		{[]string{"serve", "-h"}, 0, "", "-message-rate value\n"}, // help asked for is no error
	} {
		var out, errOut bytes.Buffer
		env := Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }}
		status := Main(context.Background(), tc.args, env, "v1.2")
		if status != tc.status || !strings.Contains(out.String(), tc.out) || !strings.Contains(errOut.String(), tc.err) {
			t.Errorf("%v: status %d, stdout %q, stderr %q", tc.args, status, out.String(), errOut.String())
		}
	}
}
