package e2e

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Issue 10 (groups), with the real binary: membership only members
// change, messages to every member once, removal and late joining.

// groupTexts are the texts of a group's messages in msgs, as "from: text".
func groupTexts(msgs []message, title string) []string {
	var out []string
	for _, m := range msgs {
		if m.Group == title && m.Kind == "text" {
			out = append(out, m.From+": "+m.Text)
		}
	}
	return out
}

func TestGroupOfFive(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--register-burst", "10")
	names := []string{"alice", "bob", "carol", "dave", "erin"}
	users := make(map[string]user)
	for _, n := range names {
		users[n] = register(t, s, n)
	}
	alice := users["alice"]
	title := "title-marker-7f3a9c"
	out := ok(t, nil, "group", "--home", alice.home, "create", title, "bob", "carol", "dave", "erin").Stdout
	if !strings.Contains(out, `created "`+title+`"`) || !strings.Contains(out, "5 members") {
		t.Fatalf("group create: %q", out)
	}
	for _, n := range names[1:] {
		msgs := users[n].recv(t, "0s")
		if len(msgs) != 1 || msgs[0].Kind != "system" || !strings.Contains(msgs[0].Text, "alice added you") {
			t.Fatalf("%s read %+v", n, msgs)
		}
	}
	info := ok(t, nil, "group", "--home", users["carol"].home, "info", title).Stdout
	for _, want := range []string{"alice  owner", "bob    member", "carol  member  you"} {
		if !strings.Contains(info, want) {
			t.Errorf("group info for carol lacks %q:\n%s", want, info)
		}
	}

	// A message from each member reaches every other member, once.
	marker := "plaintext-marker-91be"
	for _, n := range names {
		ok(t, nil, "send", "--home", users[n].home, "--group", title, n+" says "+marker)
	}
	for _, n := range names {
		got := groupTexts(users[n].recv(t, "0s"), title)
		var want []string
		for _, o := range names {
			if o != n {
				want = append(want, o+": "+o+" says "+marker)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s read %q, want %q", n, got, want)
		}
	}

	// A plain member cannot add; a promoted admin can; the one added
	// later reads nothing sent before.
	frank := register(t, s, "frank")
	fails(t, 1, "only admins add members", nil, "group", "--home", users["bob"].home, "add", title, "frank")
	ok(t, nil, "group", "--home", alice.home, "role", title, "bob", "admin")
	users["bob"].recv(t, "0s")
	ok(t, nil, "group", "--home", users["bob"].home, "add", title, "frank")
	got := frank.recv(t, "0s")
	if len(got) != 1 || !strings.Contains(got[0].Text, "bob added you") || len(groupTexts(got, title)) != 0 {
		t.Fatalf("frank read %+v", got)
	}

	// bob, now an admin, mutes carol for a day: her own client refuses.
	ok(t, nil, "group", "--home", users["bob"].home, "mute", title, "carol", "1d")
	users["carol"].recv(t, "0s")
	fails(t, 1, "muted you until", nil, "send", "--home", users["carol"].home, "--group", title, "may I?")
	ok(t, nil, "group", "--home", users["bob"].home, "mute", title, "carol", "off")
	users["carol"].recv(t, "0s")

	// alice removes erin: erin is told, and reads nothing sent after.
	alice.recv(t, "0s")
	ok(t, nil, "group", "--home", alice.home, "remove", title, "erin")
	ok(t, nil, "send", "--home", alice.home, "--group", title, "after erin left")
	got = users["erin"].recv(t, "0s")
	if len(got) == 0 || !strings.Contains(got[len(got)-1].Text, "alice removed you") || len(groupTexts(got, title)) != 0 {
		t.Fatalf("erin read %+v", got)
	}
	fails(t, 1, "no longer a member", nil, "send", "--home", users["erin"].home, "--group", title, "hello?")
	if got := groupTexts(frank.recv(t, "0s"), title); !slices.Equal(got, []string{"alice: after erin left"}) {
		t.Fatalf("frank read %q", got)
	}
	list := ok(t, nil, "group", "--home", users["erin"].home, "list").Stdout
	if !strings.Contains(list, title) || !strings.Contains(list, "you left") {
		t.Errorf("erin's group list: %q", list)
	}

	// Neither the plaintext nor the title is in the server's files or logs.
	err := filepath.WalkDir(s.data, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range []string{marker, title} {
			if bytes.Contains(b, []byte(m)) {
				t.Errorf("%s holds %q", path, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{marker, title} {
		if strings.Contains(s.stderr.String()+s.stdout.String(), m) {
			t.Errorf("the server's output holds %q", m)
		}
	}
}

// TestGroupCommandErrors: mistakes are one line each.
func TestGroupCommandErrors(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	alice := register(t, s, "alice")
	fails(t, 2, "unknown subcommand", nil, "group", "--home", alice.home, "frobnicate")
	fails(t, 2, "admin or member", nil, "group", "--home", alice.home, "role", "x", "bob", "boss")
	fails(t, 2, "group mute: how long is a duration like 1h or 30d, or off", nil, "group", "--home", alice.home, "mute", "x", "bob", "soon")
	fails(t, 1, `no group called "nope"`, nil, "group", "--home", alice.home, "info", "nope")
	fails(t, 1, "no such user", nil, "group", "--home", alice.home, "create", "t", "nobody")
	fails(t, 2, "--to NAME or --group TITLE, not both", nil, "send", "--home", alice.home, "--to", "bob", "--group", "t", "x")
	ok(t, nil, "group", "--home", alice.home, "create", "twice")
	ok(t, nil, "group", "--home", alice.home, "create", "twice")
	fails(t, 1, `2 groups are called "twice"`, nil, "send", "--home", alice.home, "--group", "twice", "x")
	if out := ok(t, nil, "group", "--home", alice.home, "list").Stdout; strings.Count(out, "twice") != 2 {
		t.Errorf("group list: %q", out)
	}
}
