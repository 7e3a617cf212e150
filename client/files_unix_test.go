//go:build unix

package client

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/securechat/securechat/appliance"
	"github.com/securechat/securechat/chat"
)

// TestFileSaveUmask: a saved file takes the permissions the user's umask
// gives a new file (0600 under umask 077), never 0644 regardless: the
// plaintext of an end-to-end encrypted file is not made readable by
// others when the user keeps new files private.
func TestFileSaveUmask(t *testing.T) {
	s := startBlobServer(t, t.TempDir(), "127.0.0.1:0", appliance.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ha, hb := testAccount(t, s, "alice"), testAccount(t, s, "bob")
	alice := oneShotEngine(t, ctx, ha, false)
	t.Cleanup(alice.Close)
	src := filepath.Join(t.TempDir(), "payslip.pdf")
	if err := os.WriteFile(src, randomFile(70_000, 13), 0o600); err != nil {
		t.Fatal(err)
	}
	sent, err := alice.SendFile(ctx, chat.Peer("bob"), src, nil)
	if err != nil {
		t.Fatal(err)
	}
	bob := oneShotEngine(t, ctx, hb, true)
	t.Cleanup(bob.Close)
	if err := bob.Receive(ctx, ReceiveOptions{Wait: 500 * time.Millisecond, Show: func(*Message) error { return nil }}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.FetchFile(ctx, sent.ID, nil); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	for _, umask := range []int{0o077, 0o022} {
		old := syscall.Umask(umask)
		path, err := bob.SaveFile(sent.ID, out)
		syscall.Umask(old)
		if err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if want := os.FileMode(0o644 &^ umask); st.Mode().Perm() != want {
			t.Errorf("under umask %03o %s was saved %v, want %v", umask, filepath.Base(path), st.Mode().Perm(), want)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(out, ".securechat-save-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
