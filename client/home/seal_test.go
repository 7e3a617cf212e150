package home

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/securechat/securechat/transport"
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
	h, err = Open(dir, Options{Passphrase: "right", KDF: cheapKDF})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.SaveProfile(&Profile{User: "x"}); err != nil {
		t.Fatal(err)
	}
	h.Close()
	if _, err := Open(dir, Options{Passphrase: "wrong", Create: true, KDF: cheapKDF}); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase with Create on a registered home: %v", err)
	}
	if _, err := Open(dir, Options{Passphrase: ""}); err == nil {
		t.Fatal("empty passphrase accepted")
	}
}

// readKDF reads a closed home's clear key parameters.
func readKDF(t *testing.T, dir string) kdfRecord {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, homeDB), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rec kdfRecord
	err = db.View(func(tx *bolt.Tx) error { return transport.Unmarshal(tx.Bucket(bucketMeta).Get(keyKDF), &rec) })
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// A home sealed with weaker argon2id parameters than asked for (earlier
// versions used t=1; the default is now t=3) is upgraded when it is opened
// with the right passphrase: afterwards the stronger parameters are what
// stand between the passphrase and the home, its values still open, and a
// wrong passphrase is still refused. Tests use cheap parameters; the
// upgrade is from t=1 to t=2 here.
func TestKDFUpgrade(t *testing.T) {
	t.Parallel()
	if DefaultKDF.Time < 3 {
		t.Errorf("DefaultKDF %+v: want argon2id t≥3 (RFC 9106)", DefaultKDF)
	}
	dir := t.TempDir()
	old, stronger := KDFParams{Time: 1, MemoryK: 64, Threads: 1}, KDFParams{Time: 2, MemoryK: 128, Threads: 1}
	h, err := Open(dir, Options{Passphrase: "right", Create: true, KDF: old})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.SaveSettings(Settings{SendTyping: false, SendReceipts: true}); err != nil {
		t.Fatal(err)
	}
	h.Close()
	before := readKDF(t, dir)
	if before.Params != old || before.Wrapped != nil {
		t.Fatalf("a new home's parameters %+v", before)
	}

	if _, err := Open(dir, Options{Passphrase: "wrong", KDF: stronger}); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if after := readKDF(t, dir); after.Params != old || after.Wrapped != nil {
		t.Fatalf("a wrong passphrase upgraded the home: %+v", after)
	}
	h, err = Open(dir, Options{Passphrase: "right", KDF: stronger})
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	after := readKDF(t, dir)
	if after.Params != stronger || after.Wrapped == nil || bytes.Equal(after.Salt, before.Salt) {
		t.Fatalf("after opening with stronger parameters: %+v, want them in force", after)
	}
	// Opened again, with the stronger or the older parameters: the same
	// home, nothing downgraded.
	for _, kdf := range []KDFParams{stronger, old} {
		h, err = Open(dir, Options{Passphrase: "right", KDF: kdf})
		if err != nil {
			t.Fatal(err)
		}
		if s := h.Settings(); s.SendTyping || !s.SendReceipts {
			t.Fatalf("settings after the upgrade: %+v, want what was stored", s)
		}
		h.Close()
		if again := readKDF(t, dir); again.Params != stronger || !bytes.Equal(again.Wrapped, after.Wrapped) {
			t.Fatalf("reopening changed the parameters: %+v", again)
		}
	}
	if _, err := Open(dir, Options{Passphrase: "wrong", KDF: stronger}); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase after the upgrade: %v", err)
	}
}
