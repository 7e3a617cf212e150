package cli

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/securechat/securechat/admin"
	"github.com/securechat/securechat/appliance"
	"github.com/securechat/securechat/appliance/store"
	"github.com/securechat/securechat/appliance/store/boltstore"
	"github.com/securechat/securechat/internal/usage"
)

// The store's damage commands (docs/design.md §7, operations.md §7): `securechat admin check` and `serve --check-store` check a
// stopped server's store as serve does before it serves; `securechat
// admin salvage OUT` copies what can be read of a damaged one into a new
// file.

// checkStore checks the store in dir and prints what it found to out:
// its size, its records per bucket, notes, and each damaged part. A
// damaged store is an error (exit status 1) with the ways out.
func checkStore(dir string, out io.Writer) error {
	r, err := appliance.CheckStore(dir, nil)
	if r == nil && err == nil {
		return fmt.Errorf("%s holds no store (%s)", dir, appliance.FileDB)
	}
	if r == nil {
		return err
	}
	return admin.PrintStoreCheck(out, appliance.StoreCheckOf(dir, r))
}

const salvageUsage = "usage: securechat admin [--data DIR] salvage OUT (with the server stopped; OUT must not exist)"

// salvageStore is `securechat admin salvage OUT`.
func salvageStore(dir string, args []string, out io.Writer) error {
	if len(args) != 1 || strings.HasPrefix(args[0], "-") {
		return usage.Errorf(salvageUsage)
	}
	src := filepath.Join(dir, appliance.FileDB)
	rep, err := boltstore.Salvage(src, args[0])
	if err != nil {
		if errors.Is(err, store.ErrDataInUse) {
			return fmt.Errorf("data directory %s is in use by a securechat server: stop it before salvaging its store", dir)
		}
		return fmt.Errorf("salvage: %w", err)
	}
	fmt.Fprintf(out, "salvaged %s into %s\n", src, args[0])
	fmt.Fprintf(out, "%-12s %8s %8s %10s %8s\n", "bucket", "kept", "read", "lost pages", "dropped")
	for _, b := range rep.Buckets {
		kept := fmt.Sprint(b.Kept)
		if b.Recomputed {
			kept += "*"
		}
		fmt.Fprintf(out, "%-12s %8s %8d %10d %8d\n", b.Bucket, kept, b.Read, b.LostPages, b.Dropped)
	}
	fmt.Fprintln(out, "(* holds counts recomputed from the records kept; a lost page's records are counted nowhere)")
	for _, d := range rep.Damage {
		fmt.Fprintf(out, "lost: %s\n", d)
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(out, "note: %s\n", n)
	}
	fmt.Fprintf(out, "the new store verifies; to serve it, with the server stopped: mv %s %s (keep the damaged file elsewhere), then start the server\n", args[0], src)
	return nil
}
