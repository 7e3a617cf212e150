package cli

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/internal/usage"
)

const homeUsage = `home [--home DIR] SUBCOMMAND ...
  check         check the home's file (client.db) page by page; exit 1 if damaged
  salvage OUT   copy every record of a damaged home that can be read, sealed as it
                is, into the new file OUT (no securechat may have the home open)`

// HomeCmd is `securechat home` (docs/design.md §7, §6.2): the check and
// salvage of a damaged home. Neither needs the passphrase: they read the
// file's structure, and copy the sealed records as they are.
func HomeCmd(ctx context.Context, args []string, env Env) error {
	fs := usage.NewFlagSet("home", env.Stderr).Synopsis("SUBCOMMAND ... (check, salvage OUT)").After(usage.Command, "")
	dir := homeFlag(fs, env)
	if err := fs.Parse(args); err != nil {
		return err
	}
	a := fs.Args()
	switch {
	case len(a) == 1 && a[0] == "check":
		return homeCheck(*dir, env)
	case len(a) == 2 && a[0] == "salvage" && !strings.HasPrefix(a[1], "-"):
		return homeSalvage(*dir, a[1], env)
	case len(a) > 0 && a[0] != "check" && a[0] != "salvage":
		return usage.Errorf("home: unknown subcommand %q (check, salvage)", a[0])
	}
	return usage.Errorf("usage: securechat %s", homeUsage)
}

// homeWaysOut is what to do about a damaged home in dir.
func homeWaysOut(dir string) string {
	return fmt.Sprintf("with no securechat using it, salvage it: securechat home --home %s salvage OUT copies every record that can be read into the new file OUT; move OUT to %s (keep the damaged file elsewhere); or put back a copy of the home directory (its sessions then start again)",
		dir, filepath.Join(dir, "client.db"))
}

func homeCheck(dir string, env Env) error {
	r, err := home.CheckFile(dir)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "home %s: %d bytes, %d pages, transaction %d\n", r.Path, r.Size, r.Pages, r.TxID)
	var counts []string
	for _, b := range slices.Sorted(maps.Keys(r.Records)) {
		counts = append(counts, fmt.Sprintf("%s %d", b, r.Records[b]))
	}
	fmt.Fprintf(env.Stdout, "records read: %s\n", strings.Join(counts, ", "))
	for _, n := range r.Notes {
		fmt.Fprintf(env.Stdout, "note: %s\n", n)
	}
	for _, d := range r.Damage {
		fmt.Fprintf(env.Stdout, "damaged: %s\n", d)
	}
	var de *home.DamagedHomeError
	if err := r.Err(); errors.As(err, &de) {
		return fmt.Errorf("the home %s is damaged (%d damaged parts, listed above); %s", r.Path, len(r.Damage), homeWaysOut(dir))
	}
	fmt.Fprintln(env.Stdout, "home ok")
	return nil
}

func homeSalvage(dir, out string, env Env) error {
	rep, err := home.SalvageFile(dir, out)
	if err != nil {
		return fmt.Errorf("salvage: %w", err)
	}
	fmt.Fprintf(env.Stdout, "salvaged %s into %s\n", filepath.Join(dir, "client.db"), out)
	fmt.Fprintf(env.Stdout, "%-12s %8s %10s\n", "bucket", "kept", "lost pages")
	for _, b := range rep.Buckets {
		fmt.Fprintf(env.Stdout, "%-12s %8d %10d\n", b.Bucket, b.Kept, b.LostPages)
	}
	for _, d := range rep.Damage {
		fmt.Fprintf(env.Stdout, "lost: %s\n", d)
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(env.Stdout, "note: %s\n", n)
	}
	fmt.Fprintf(env.Stdout, "to use it: mv %s %s (keep the damaged file elsewhere)\n", out, filepath.Join(dir, "client.db"))
	return nil
}
