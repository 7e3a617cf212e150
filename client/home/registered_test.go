package home

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"

	"github.com/securechat/securechat/transport"
)

// TestRegistered: whether a home holds an account is known without its
// passphrase and without writing to it; the account is named only with the
// right passphrase; a home sealed but never registered is not registered.
func TestRegistered(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "home")
	if reg, p, err := Registered(dir, "pp"); reg || p != nil || err != nil {
		t.Fatalf("no home: %v %v %v", reg, p, err)
	}
	h, err := Open(dir, Options{Passphrase: "pp", Create: true, KDF: cheapKDF})
	if err != nil {
		t.Fatal(err)
	}
	if reg, p, err := Registered(dir, "pp"); reg || p != nil || err == nil {
		t.Errorf("a home open elsewhere: %v %v %v, want it in use", reg, p, err)
	}
	h.Close()
	if reg, p, err := Registered(dir, "pp"); reg || p != nil || err != nil {
		t.Fatalf("sealed, no account: %v %v %v", reg, p, err)
	}
	h, err = Open(dir, Options{Passphrase: "pp", KDF: cheapKDF})
	if err != nil {
		t.Fatal(err)
	}
	fp, _ := transport.ParseFingerprint("ab" + string(bytes.Repeat([]byte("cd"), 31)))
	_, priv, _ := ed25519.GenerateKey(nil)
	if err := h.SaveProfile(&Profile{Server: "example.org:4433", Fingerprint: fp, User: "alice", Device: 3, DeviceKey: priv}); err != nil {
		t.Fatal(err)
	}
	h.Close()
	before, err := os.ReadFile(filepath.Join(dir, homeDB))
	if err != nil {
		t.Fatal(err)
	}
	if reg, p, err := Registered(dir, ""); !reg || p != nil || err != nil {
		t.Errorf("registered, no passphrase: %v %v %v", reg, p, err)
	}
	if reg, p, err := Registered(dir, "wrong"); !reg || p != nil || err != nil {
		t.Errorf("registered, wrong passphrase: %v %v %v", reg, p, err)
	}
	if reg, p, err := Registered(dir, "pp"); !reg || err != nil || p == nil || p.User != "alice" || p.Device != 3 {
		t.Errorf("registered, right passphrase: %v %+v %v", reg, p, err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, homeDB)); !bytes.Equal(before, after) {
		t.Error("Registered changed the home's file")
	}
}
