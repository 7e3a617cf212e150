package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client"
	"github.com/securechat/securechat/client/home"
	"github.com/securechat/securechat/internal/usage"
)

// Files (issue 12; docs/design.md §7, protocol.md §8.4): send-file, and
// files list / files get.

// SendFile is `securechat send-file`.
func SendFile(ctx context.Context, args []string, env Env) error {
	fs := usage.NewFlagSet("send-file", env.Stderr).Synopsis("PATH").After(usage.Anywhere, "")
	dir := homeFlag(fs, env)
	to, group := recipientFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := checkRecipient("send-file", *to, *group); err != nil {
		return err
	}
	switch {
	case fs.NArg() == 0:
		return usage.Errorf("send-file: no file given")
	case fs.NArg() > 1:
		return usage.Errorf("send-file: one file at a time (%d given)", fs.NArg())
	}
	path := fs.Arg(0)
	h, e, err := connect(ctx, env, *dir, false)
	if err != nil {
		return err
	}
	defer h.Close()
	defer e.Close()
	if err := flushOutbox(ctx, e, env); err != nil {
		return fmt.Errorf("the file was not sent, since an earlier message still waits: %w", err)
	}
	conv := chat.Peer(*to)
	if *group != "" {
		g, err := e.ResolveGroup(*group)
		if err != nil {
			return err
		}
		conv = g.Conversation
	}
	// Uploads an earlier run left are finished first; the same file to
	// the same conversation is not sent twice.
	again, err := e.PendingUpload(conv, path)
	if err != nil {
		return err
	}
	tty := isTerminal(env.Stderr)
	titles := groupTitles(e)
	where := func(c chat.Conversation) string {
		if c.IsGroup() {
			return "the group " + titles(c)
		}
		return c.ID()
	}
	done, err := e.ResumeUploads(ctx, func(fi *client.FileInfo, have int64) {
		fmt.Fprintf(env.Stderr, "resuming %s to %s: %s of it already on the server\n", fi.Name, where(fi.Conversation), chat.FormatBytes(have))
	}, progressBar(env.Stderr, tty, "sending"))
	for _, fi := range done {
		fmt.Fprintf(env.Stderr, "sent %s (%s) to %s\n", fi.Name, chat.FormatBytes(fi.Size), where(fi.Conversation))
	}
	if again != nil {
		for _, fi := range done {
			if fi.ID == again.ID {
				return nil
			}
		}
		return err // it was among them and did not finish
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "securechat: warning: an earlier upload did not finish (tried again next time): %v\n", err)
	}
	fi, err := e.SendFile(ctx, conv, path, progressBar(env.Stderr, tty, "sending"))
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "sent %s (%s) to %s\n", fi.Name, chat.FormatBytes(fi.Size), where(fi.Conversation))
	return nil
}

// progressBar shows a transfer's progress on w: a bar redrawn in place on
// a terminal, else a line every tenth.
func progressBar(w io.Writer, tty bool, what string) func(*client.FileInfo) {
	last := int64(-1)
	return func(fi *client.FileInfo) {
		if fi.Total <= 0 {
			return
		}
		if !tty {
			tenth := fi.Done * 10 / fi.Total
			if tenth == last && fi.Done != fi.Total {
				return
			}
			last = tenth
			fmt.Fprintf(w, "%s %s: %s of %s (%d%%)\n", what, fi.Name, chat.FormatBytes(fi.Done), chat.FormatBytes(fi.Total), fi.Done*100/fi.Total)
			return
		}
		end := ""
		if fi.Done == fi.Total {
			end = "\n"
		}
		fmt.Fprintf(w, "\r%s %s %s%s", what, fi.Name, ProgressText(fi), end)
	}
}

// ProgressText is a transfer's bar and figures: [#####     ] 12.0 MiB of
// 50.0 MiB, 4.1 MiB/s, 9s left (chat.FormatProgress, as the terminal
// client shows them).
func ProgressText(fi *client.FileInfo) string {
	return chat.FormatProgress(fi.Done, fi.Total, fi.Rate, fi.Left, 20)
}

const filesUsage = `files [--home DIR] SUBCOMMAND ...
  list [--json]            the files you sent and were sent (the messages recv or chat took in)
  get [--out PATH] ID      fetch a file, check it, and save it (to PATH, or its name here)`

// Files is `securechat files`.
func Files(ctx context.Context, args []string, env Env) error {
	fs := usage.NewFlagSet("files", env.Stderr).Synopsis("SUBCOMMAND ... (list, get)").After(usage.Command, "")
	dir := homeFlag(fs, env)
	if err := fs.Parse(args); err != nil {
		return err
	}
	a := fs.Args()
	if len(a) == 0 {
		return usage.Errorf("usage: securechat %s", filesUsage)
	}
	sub, a := a[0], a[1:]
	sfs := usage.NewFlagSet("files "+sub, env.Stderr).After(usage.Anywhere, "")
	var asJSON *bool
	var out *string
	need := 0
	switch sub {
	case "list":
		asJSON = sfs.Bool("json", false, "print one JSON object per file")
	case "get":
		out = sfs.String("out", "", "where to save it: a `path`, or a directory to save it in under its name")
		sfs.Synopsis("ID")
		need = 1
	default:
		return usage.Errorf("files: unknown subcommand %q (list, get)", sub)
	}
	if err := sfs.Parse(a); err != nil {
		return err
	}
	if a = sfs.Args(); len(a) != need {
		return usage.Errorf("usage: securechat %s", filesUsage)
	}
	if sub == "list" {
		h, e, err := openEngine(env, *dir)
		if err != nil {
			return err
		}
		defer h.Close()
		defer e.Close()
		return filesList(e, env, *asJSON)
	}
	h, e, err := openEngine(env, *dir)
	if err != nil {
		return err
	}
	fi, err := e.FindFile(a[0])
	if err != nil {
		e.Close()
		h.Close()
		return err
	}
	if fi.State != home.FileComplete {
		e.Close()
		h.Close()
		if h, e, err = connect(ctx, env, *dir, false); err != nil {
			return err
		}
	}
	defer h.Close()
	defer e.Close()
	if _, err := e.FetchFile(ctx, fi.ID, progressBar(env.Stderr, isTerminal(env.Stderr), "fetching")); err != nil {
		return err
	}
	path, err := e.SaveFile(fi.ID, *out)
	if err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, path)
	return nil
}

// jsonFile is one line of `files list --json` (docs/design.md §7).
type jsonFile struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Size     int64  `json:"size"`
	Type     string `json:"type"`
	From     string `json:"from"`
	To       string `json:"to,omitempty"`       // a peer, for a file sent
	GroupID  string `json:"group_id,omitempty"` // the group's id, for a group's file
	Outgoing bool   `json:"outgoing"`
	State    string `json:"state"`
	SentAt   string `json:"sent_at"`
	Saved    string `json:"saved,omitempty"`
	Error    string `json:"error,omitempty"`
}

func filesList(e *client.Engine, env Env, asJSON bool) error {
	files, err := e.Files()
	if err != nil {
		return err
	}
	out := bufio.NewWriter(env.Stdout)
	defer out.Flush()
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetEscapeHTML(false)
		for _, f := range files {
			j := jsonFile{ID: f.ID, Name: f.Name, Size: f.Size, Type: f.Type, From: f.From, Outgoing: f.Outgoing, State: f.State.String(),
				SentAt: f.Time.UTC().Format(time.RFC3339Nano), Saved: f.Saved, Error: f.Error}
			if f.Conversation.IsGroup() {
				j.GroupID = f.Conversation.ID()
			} else if f.Outgoing {
				j.To = f.Conversation.ID()
			}
			if err := enc.Encode(j); err != nil {
				return err
			}
		}
		return nil
	}
	if len(files) == 0 {
		fmt.Fprintln(env.Stderr, "no files yet (files sent to you appear once recv or chat took in their messages)")
		return nil
	}
	titles := groupTitles(e)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tSIZE\tWHO\tSENT\tNAME")
	for _, f := range files {
		who := "from " + f.From
		if f.Outgoing {
			who = "to " + f.Conversation.ID()
		}
		if f.Conversation.IsGroup() {
			who += " in " + titles(f.Conversation)
		}
		state := f.State.String()
		switch f.State {
		case home.FileComplete:
			if f.Saved != "" {
				state = "saved"
			}
		case home.FileFailed:
			state = "failed: " + f.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", f.ShortID(), state, chat.FormatBytes(f.Size), who, f.Time.Local().Format("2006-01-02 15:04"), f.Name)
	}
	return tw.Flush()
}

// groupTitles names groups by title for a listing.
func groupTitles(e *client.Engine) func(chat.Conversation) string {
	titles := make(map[chat.Conversation]string)
	if gs, err := e.Groups(); err == nil {
		for _, g := range gs {
			titles[g.Conversation] = fmt.Sprintf("%q", g.Title)
		}
	}
	return func(c chat.Conversation) string {
		if t, ok := titles[c]; ok {
			return t
		}
		return "g:" + c.ID()[:min(8, len(c.ID()))]
	}
}

// fileLine is how recv shows a file message.
func fileLine(m *client.Message) string {
	t := m.File.Type
	if t == "" {
		t = "file"
	}
	return fmt.Sprintf("file %s (%s, %s): securechat files get %s", filepath.Base(m.File.Name), chat.FormatBytes(m.File.Plain), t, m.ID[:8])
}
