package e2ee

import (
	"bytes"
	"errors"
	"testing"
)

// TestGroupSignal: a signal opens under its key and associated data only;
// a changed byte, another key or other associated data fail.
func TestGroupSignal(t *testing.T) {
	k, err := NewSignalKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewSignalKey(nil)
	msg, err := SealSignal(nil, &k, []byte("typing"), []byte("group+alice/1"))
	if err != nil {
		t.Fatal(err)
	}
	if p, err := OpenSignal(&k, msg, []byte("group+alice/1")); err != nil || !bytes.Equal(p, []byte("typing")) {
		t.Fatalf("open: %q %v", p, err)
	}
	again, _ := SealSignal(nil, &k, []byte("typing"), []byte("group+alice/1"))
	if bytes.Equal(again, msg) {
		t.Error("two seals of one signal are the same bytes: the nonce is not random")
	}
	bad := bytes.Clone(msg)
	bad[len(bad)-1] ^= 1
	for name, try := range map[string]func() error{
		"changed byte": func() error { _, err := OpenSignal(&k, bad, []byte("group+alice/1")); return err },
		"other key":    func() error { _, err := OpenSignal(&other, msg, []byte("group+alice/1")); return err },
		"other AD":     func() error { _, err := OpenSignal(&k, msg, []byte("group+bob/1")); return err },
		"short":        func() error { _, err := OpenSignal(&k, msg[:20], nil); return err },
	} {
		if err := try(); !errors.Is(err, ErrSignal) {
			t.Errorf("%s: %v", name, err)
		}
	}
	msg[0] = 2
	if _, err := OpenSignal(&k, msg, []byte("group+alice/1")); !errors.Is(err, ErrUnsupportedVersion) {
		t.Errorf("version 2: %v", err)
	}
}
