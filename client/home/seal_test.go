package home

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

var cheapKDF = KDFParams{Time: 1, MemoryK: 64, Threads: 1}

func TestHomeSealing(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir, Options{Passphrase: "pw"}); !errors.Is(err, ErrNotRegistered) {
		t.Fatalf("opening a missing home without Create: %v", err)
	}
	h, err := Open(dir, Options{Passphrase: "right", Create: true, KDF: cheapKDF})
	if err != nil {
		t.Fatal(err)
	}
	err = h.Update(func(tx *Tx) error {
		if err := tx.put(bucketOutbox, []byte("a"), []byte("secret value a")); err != nil {
			return err
		}
		return tx.put(bucketOutbox, []byte("b"), []byte("secret value b"))
	})
	if err != nil {
		t.Fatal(err)
	}
	// A value moved to another slot, or altered, does not open.
	h.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		va := append([]byte(nil), b.Get([]byte("a"))...)
		b.Put([]byte("moved"), va)
		flipped := append([]byte(nil), va...)
		flipped[len(flipped)-1] ^= 1
		b.Put([]byte("flipped"), flipped)
		return nil
	})
	h.View(func(tx *Tx) error {
		if v, err := tx.get(bucketOutbox, []byte("a")); err != nil || string(v) != "secret value a" {
			t.Errorf("get a: %q %v", v, err)
		}
		for _, k := range []string{"moved", "flipped"} {
			if _, err := tx.get(bucketOutbox, []byte(k)); err == nil {
				t.Errorf("%s value opened", k)
			}
		}
		return nil
	})
	h.Close()

	raw, _ := os.ReadFile(filepath.Join(dir, homeDB))
	if bytes.Contains(raw, []byte("secret value")) {
		t.Error("plaintext on disk")
	}
	// Wrong passphrase: refused, even with Create, once the home holds a profile.
	if _, err := Open(dir, Options{Passphrase: "wrong"}); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	h, err = Open(dir, Options{Passphrase: "right"})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.SaveProfile(&Profile{User: "x"}); err != nil {
		t.Fatal(err)
	}
	h.Close()
	if _, err := Open(dir, Options{Passphrase: "wrong", Create: true}); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase with Create on a registered home: %v", err)
	}
	if _, err := Open(dir, Options{Passphrase: ""}); err == nil {
		t.Fatal("empty passphrase accepted")
	}
}
