package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/e2ee"
	"github.com/securechat/securechat/internal/qrterm"
	"github.com/securechat/securechat/internal/usage"
	"github.com/securechat/securechat/transport"
)

// Linked devices on the command line (docs/design.md §7, protocol.md
// §5.4): `link` on the new device, `devices` on one of the account's.

// linkQRPrefix starts the text of the QR code link shows: the user and
// the code after it ("securechat-link:alice:ABCD-EFGH-JKMN").
const linkQRPrefix = "securechat-link:"

// Link is `securechat link`: it makes this home a new device of an
// existing account, once one of the account's devices approves the code
// it prints (alone on the first line of stdout, for scripts).
func Link(ctx context.Context, args []string, env Env) error {
	fs := usage.NewFlagSet("link", env.Stderr)
	dir := homeFlag(fs, env)
	server := fs.String("server", "", "server `HOST:PORT`")
	user := fs.String("user", "", "the account's user `name`")
	serverKey := fs.String("server-key", "", "expected server key `fingerprint` (64 hex digits); without it the key is trusted on first use")
	name := fs.String("name", hostname(), "a `name` for this device, shown when it is approved and in devices list")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usage.Errorf("link: unexpected argument %q", fs.Arg(0))
	}
	if *server == "" || *user == "" {
		return usage.Errorf("link: --server and --user are required")
	}
	var pin transport.Fingerprint
	if *serverKey != "" {
		var err error
		if pin, err = transport.ParseFingerprint(*serverKey); err != nil {
			return usage.Errorf("link: --server-key: %v", err)
		}
	}
	if err := refuseRegistered(env, *dir); err != nil {
		return err
	}
	nl, err := client.PrepareLink(*user, nil)
	if err != nil {
		return err
	}
	pass, err := readPassphrase(env, true)
	if errors.Is(err, errEndOfInput) {
		return errInterrupted
	}
	if err != nil {
		return err
	}
	warnWeakPassphrase(env.Stderr, pass)
	// As register: a link that does not finish leaves the home as it was.
	undo := undoCreate(*dir)
	h, err := home.Open(*dir, home.Options{Passphrase: pass, Create: true})
	if err != nil {
		undo()
		return err
	}
	done := false
	defer func() {
		if !done {
			h.Close()
			undo()
		}
	}()
	sctx, cancel := context.WithTimeout(ctx, connectTimeout)
	w, err := nl.Start(sctx, *server, pin, *name)
	cancel()
	if ctx.Err() != nil {
		return errInterrupted
	}
	if err != nil {
		return err
	}
	defer w.Close()
	fmt.Fprintln(env.Stdout, nl.Code)
	if pin.IsZero() {
		fmt.Fprintf(env.Stderr, "server key fingerprint: %s\n  trusted on first use: compare it with the fingerprint the server printed at start\n", w.Fingerprint.Grouped())
	}
	fmt.Fprintf(env.Stderr, "To link this device to %s, on a device of the account run\n  securechat devices approve %s\n(or type /devices approve %s in securechat chat). The code is valid until %s; Ctrl-C stops.\n",
		nl.User, nl.Code, nl.Code, chat.FormatTime(w.Expires.Local()))
	if qr, err := qrterm.Render(linkQRPrefix + nl.User + ":" + nl.Code); err == nil {
		io.WriteString(env.Stderr, qr)
	}
	a, err := w.Wait(ctx)
	if ctx.Err() != nil {
		return errInterrupted
	}
	if err != nil {
		return linkEnded(err)
	}
	w.Close()
	prof, err := nl.Finish(h, *server, w.Fingerprint, a)
	if err != nil {
		return err
	}
	done = true
	defer h.Close()
	// Authenticating as the new device publishes its keys: from then on
	// it is a recipient.
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	c, err := client.Connect(cctx, h, client.Options{HandshakeTimeout: transport.QuickHandshakeTimeout})
	fmt.Fprintf(env.Stderr, "linked as device %d of %s\n", prof.Device, prof.User)
	if err != nil {
		fmt.Fprintf(env.Stderr, "securechat: warning: linked, but connecting as the new device failed (its keys are published, and the history fetched, at the next connection): %v\n", err)
		return nil
	}
	defer c.Close()
	if err := c.KeysError(); err != nil {
		fmt.Fprintf(env.Stderr, "securechat: warning: %v\n", err)
	}
	receiveHistory(ctx, c, env.Stderr) // the history the approving device sent, if any
	return nil
}

// historyTimeout bounds fetching the history at link time.
const historyTimeout = 30 * time.Minute

// linkEnded says why the wait for an approval ended: the server's reason
// when it closed the link (the code expired), in one line.
func linkEnded(err error) error {
	var sc *client.ServerClosedError
	if errors.As(err, &sc) && sc.Reason != "" {
		return errors.New(sc.Reason)
	}
	return fmt.Errorf("the link ended before it was approved: %w", err)
}

const devicesUsage = `devices [--home DIR] SUBCOMMAND ...
  approve [--yes] CODE   link the device that shows CODE (securechat link) to this account
  list [--json]          the account's devices: linked ones, and those added with login
  rename N NAME          give device N a new name
  revoke N               remove device N from the account; it can no longer connect`

// Devices is `securechat devices` (docs/design.md §7).
func Devices(ctx context.Context, args []string, env Env) error {
	fs := usage.NewFlagSet("devices", env.Stderr).Synopsis("SUBCOMMAND ... (approve, list, rename, revoke)").After(usage.Command, "")
	dir := homeFlag(fs, env)
	if err := fs.Parse(args); err != nil {
		return err
	}
	a := fs.Args()
	if len(a) == 0 {
		return usage.Errorf("usage: securechat %s", devicesUsage)
	}
	sub, a := a[0], a[1:]
	sfs := usage.NewFlagSet("devices "+sub, env.Stderr).After(usage.Anywhere, "")
	var yes, asJSON *bool
	var history *string
	var need int
	switch sub {
	case "approve":
		yes = sfs.Bool("yes", false, "link without asking for confirmation (for scripts)")
		history = sfs.String("history", "all", "the history the new device gets: `all`, the last DAYS days, or none")
		sfs.Synopsis("CODE")
		need = 1
	case "list":
		asJSON = sfs.Bool("json", false, "print one JSON object per device")
	case "rename":
		sfs.Synopsis("N NAME")
		need = 2
	case "revoke":
		sfs.Synopsis("N")
		need = 1
	default:
		return usage.Errorf("devices: unknown subcommand %q (approve, list, rename, revoke)", sub)
	}
	if err := sfs.Parse(a); err != nil {
		return err
	}
	a = sfs.Args()
	if len(a) != need {
		return usage.Errorf("usage: securechat %s", devicesUsage)
	}
	var n uint32
	if sub == "rename" || sub == "revoke" {
		v, err := strconv.ParseUint(a[0], 10, 32)
		if err != nil || v == 0 {
			return usage.Errorf("devices %s: N is a device number (devices list shows them), not %q", sub, a[0])
		}
		n = uint32(v)
	}
	if sub == "rename" && (strings.TrimSpace(a[1]) == "" || len(a[1]) > transport.MaxText) {
		return usage.Errorf("devices rename: a name is 1 to %d bytes", transport.MaxText)
	}
	var hist *client.HistoryOptions
	if sub == "approve" {
		if _, err := normalizeCode(a[0]); err != nil {
			return err
		}
		var err error
		if hist, err = historyOption(*history, time.Now()); err != nil {
			return err
		}
	}
	h, e, err := connect(ctx, env, *dir, false)
	if err != nil {
		return err
	}
	defer h.Close()
	defer e.Close()
	switch sub {
	case "approve":
		return approve(ctx, e, env, a[0], *yes, hist)
	case "list":
		return devicesList(ctx, e, env, *asJSON)
	case "rename":
		if err := e.RenameDevice(ctx, n, a[1]); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "device %d is now named %q\n", n, a[1])
		return nil
	default: // revoke
		if err := e.RevokeDevice(ctx, n); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "device %d removed from the account: it can no longer connect, and nothing is sent to it\n", n)
		return nil
	}
}

// normalizeCode checks a typed code's form before anything is asked.
func normalizeCode(code string) (string, error) {
	c, err := e2ee.NormalizeLinkCode(code)
	if err != nil {
		return "", usage.Errorf("devices approve: %q is not a link code: it has 12 characters, like ABCD-EFGH-JKMN", code)
	}
	return c, nil
}

// approve links the device waiting with code, once its keys match the
// code and, on a terminal without --yes, the person confirms.
func approve(ctx context.Context, e *client.Engine, env Env, code string, yes bool, hist *client.HistoryOptions) error {
	cand, err := e.FindDevice(ctx, code)
	if err != nil {
		return err
	}
	user, _, _ := e.Self()
	what := fmt.Sprintf("device %d %q (waiting since %s) as a device of %s", cand.Device, cand.Name, chat.FormatTime(cand.Started.Local()), user)
	if !yes {
		tty, err := openTTY(env)
		if err != nil {
			return errors.New("no terminal to confirm the link on: run with --yes")
		}
		defer tty.close()
		fmt.Fprintf(tty.w, "Link %s?\nIt will read every message sent to %s from now on and can send as %s.\n", what, user, user)
		answer, err := tty.ask(ctx, "Link it? [y/N] ")
		if err != nil {
			return err
		}
		if !strings.EqualFold(answer, "y") && !strings.EqualFold(answer, "yes") {
			return errors.New("not linked")
		}
	}
	if hist != nil {
		hist.Progress = progressLine(env.Stderr, "sending your history")
	}
	if err := e.ApproveDevice(ctx, cand, hist); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "linked %s\n", what)
	return nil
}

// historyOption reads --history: all, a number of days, or none (nil).
func historyOption(v string, now time.Time) (*client.HistoryOptions, error) {
	switch v {
	case "all":
		return &client.HistoryOptions{}, nil
	case "none":
		return nil, nil
	}
	days, err := strconv.Atoi(v)
	if err != nil || days < 1 || days > 36500 {
		return nil, usage.Errorf("devices approve: --history is all, none or a number of days, not %q", v)
	}
	return &client.HistoryOptions{Since: now.AddDate(0, 0, -days)}, nil
}

// progressLine writes what's done of a transfer to w, a line at most
// every tenth, and the end.
func progressLine(w io.Writer, what string) func(done, total int64) {
	last := int64(-1)
	return func(done, total int64) {
		if total <= 0 {
			return
		}
		tenth := done * 10 / total
		if tenth == last && done != total {
			return
		}
		last = tenth
		fmt.Fprintf(w, "%s: %s of %s (%d%%)\n", what, chat.FormatBytes(done), chat.FormatBytes(total), done*100/total)
	}
}

// jsonDevice is one line of `devices list --json`.
type jsonDevice struct {
	ID       uint32 `json:"id"`
	Name     string `json:"name"`
	Added    string `json:"added"`
	LastSeen string `json:"last_seen"`
	This     bool   `json:"this_device"`
	Linked   bool   `json:"linked"`
}

// unlinkedNote marks a device the signed list does not name.
const unlinkedNote = "not linked (added with login): not sent to"

func devicesList(ctx context.Context, e *client.Engine, env Env, asJSON bool) error {
	devs, err := e.AccountDevices(ctx)
	if err != nil {
		return err
	}
	out := bufio.NewWriter(env.Stdout)
	defer out.Flush()
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetEscapeHTML(false)
		for _, d := range devs {
			if err := enc.Encode(jsonDevice{ID: d.ID, Name: d.Name, Added: d.Added.UTC().Format(time.RFC3339), LastSeen: d.LastSeen.UTC().Format(time.RFC3339), This: d.This, Linked: d.Linked}); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tADDED\tLAST SEEN\t")
	for _, d := range devs {
		var notes []string
		if d.This {
			notes = append(notes, "this device")
		}
		if !d.Linked {
			notes = append(notes, unlinkedNote)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", d.ID, printable(d.Name), chat.FormatTime(d.Added.Local()), chat.FormatTime(d.LastSeen.Local()), strings.Join(notes, "; "))
	}
	return tw.Flush()
}

// printable quotes a name with characters a terminal would act on.
func printable(s string) string {
	if strconv.CanBackquote(s) && !strings.ContainsAny(s, "\t`") {
		return s
	}
	return strconv.Quote(s)
}
