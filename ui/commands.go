package ui

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client"
)

// helpText is what /help shows; it is also the user's reference for the
// marks on the screen.
const helpText = `Commands:
  /msg NAME [TEXT]  open a conversation, or start one
  /msg #TITLE [TEXT]  open a group
  /group  your groups
  /group info [TITLE]  members, roles, verification, devices
  /group create TITLE [MEMBER...]  make a group; you own it
  /group add|remove TITLE MEMBER...  (its owner and admins)
  /group role TITLE MEMBER admin|member
  /group leave [TITLE]    ("TITLE in quotes" if it has spaces)
  /devices  your devices · /devices approve CODE [all|DAYS|none]
  link the device showing CODE, with your history (all, the
  last DAYS days or none) · /devices revoke N
  /file PATH  send a file to the open conversation (Tab
  completes the path) · /files  the files sent and received
  /save ID [PATH]  save a file (fetching it first if need be)
  to PATH, a directory, or here under its name
  /verify [NAME]    compare safety numbers, mark verified
  /trust [NAME]     accept a changed identity key
  /set typing on|off    send typing indicators or not
  /set receipts on|off  send read receipts or not
  /help  this help    /quit  leave (also Ctrl-C)
  //TEXT  send a message that begins with "/"
A line that fails stays in the input, selected: Enter
  tries again, ←/→ edit it, typing replaces it.
Keys:
  Enter send · Alt-Enter or Ctrl-J new line
  Up/Down input history · Tab complete
  PgUp/PgDn, mouse wheel: scroll, load older
  Esc back to the newest message
  Ctrl-N/Ctrl-P or a click: another conversation
Marks on your messages:
  …        sending (queued while offline)
  ✓        stored on the server
  ✓✓       delivered to a device of the recipient
  ✓✓ read  read by the recipient
  ✓✓ 2 of 5, ✓✓ read by 2 of 5   in a group: delivered to, read by members
  ✗        not sent
List: (3) unread · ! identity key changed · #TITLE a group
  × a group you left or were removed from, read-only
  (1a2b) the id's first digits when two groups share a title
Groups: names in a colour per member; -- lines in italics
  say who joined or left; no typing or read receipts yet
  *server*: the server's announcements, read-only
Pane: ── new ── above the first message unread when opened
Status bar: connection · server key · verification`

// commands are the slash commands, for completion.
var commands = []string{"devices", "file", "files", "group", "help", "msg", "quit", "save", "set", "trust", "verify"}

// readOnlyHint is what typing into the server's announcements says in the
// line above the input; readOnlyNote what Enter there says in the pane.
const (
	readOnlyHint = "this is the server's announcements; it is read-only"
	readOnlyNote = readOnlyHint + ": /msg NAME writes to someone"
)

// command runs a slash command line and reports whether it did what it
// was asked; a failed one has said why in the pane.
func (u *UI) command(line string) bool {
	cmd, rest := nextField(strings.TrimPrefix(line, "/"))
	cmd = strings.ToLower(cmd)
	args := strings.Fields(rest)
	switch cmd {
	case "help", "h", "?":
		u.notice(noticeInfo, "%s", helpText)
	case "quit", "q", "exit":
		u.requestQuit()
	case "msg", "m", "query":
		name, text := nextField(rest)
		if name == "" {
			u.notice(noticeError, "usage: /msg NAME [TEXT]")
			return false
		}
		if name == client.SystemConversation.String() { // the announcements, to read
			c := u.conversation(client.SystemConversation, false)
			if c == nil {
				u.notice(noticeError, "no announcements from the server yet")
				return false
			}
			u.openConversation(c)
			if strings.TrimSpace(text) != "" {
				return u.sendText(c, text) // refused: read-only
			}
			return true
		}
		if strings.HasPrefix(name, "#") { // a group
			title, text := splitTitle(rest, u.groupNames())
			g, err := u.findGroup(title)
			if err != nil {
				u.notice(noticeError, "/msg: %v", err)
				return false
			}
			c := u.conversation(g.Conversation, true)
			u.openConversation(c)
			if strings.TrimSpace(text) != "" {
				return u.sendText(c, text)
			}
			return true
		}
		name, err := canonicalName(name)
		if err != nil {
			u.notice(noticeError, "%v", err)
			return false
		}
		c := u.conversation(chat.Peer(name), true)
		u.openConversation(c)
		if strings.TrimSpace(text) != "" {
			return u.sendText(c, text)
		}
	case "verify":
		name, ok := u.commandName("verify", args)
		if ok {
			u.verify.open(name)
		}
		return ok
	case "trust":
		name, ok := u.commandName("trust", args)
		return ok && u.trust(name, "")
	case "set":
		return u.set(args)
	case "group", "g":
		return u.groupCommand(rest)
	case "devices":
		return u.devicesCommand(args)
	case "file":
		return u.fileCommand(rest)
	case "files":
		return u.filesCommand()
	case "save":
		return u.saveCommand(rest)
	default:
		u.notice(noticeError, "unknown command /%s: /help lists the commands", cmd)
		return false
	}
	return true
}

// commandName is a command's NAME argument as a conversation, the open
// conversation if there is none. The server's announcements are refused:
// they are signed with the server key the home pins, and there is no
// safety number or identity key to compare or accept.
func (u *UI) commandName(cmd string, args []string) (chat.Conversation, bool) {
	system := client.SystemConversation.String()
	if (len(args) == 1 && args[0] == system) || (len(args) == 0 && u.open.isSystem()) {
		u.notice(noticeError, "/%s: %s is the server's announcements, signed with the server key your home pins (the status bar shows it); there is no safety number to compare or key to accept", cmd, system)
		return chat.Conversation{}, false
	}
	if (len(args) == 1 && strings.HasPrefix(args[0], "#")) || (len(args) == 0 && u.open.Conversation.IsGroup()) {
		u.notice(noticeError, "/%s: a group has no safety number of its own: /group info shows whether you verified each member; /%s NAME compares with one of them", cmd, cmd)
		return chat.Conversation{}, false
	}
	switch {
	case len(args) > 1:
	case len(args) == 1:
		name, err := canonicalName(args[0])
		if err != nil {
			u.notice(noticeError, "%v", err)
			return chat.Conversation{}, false
		}
		return chat.Peer(name), true
	case u.open != u.console:
		return u.open.Conversation, true
	}
	u.notice(noticeError, "usage: /%s NAME", cmd)
	return chat.Conversation{}, false
}

// trust accepts name's changed identity key (/trust: the key last shown;
// the verification screen's "Accept new key": the key of the number it
// shows).
func (u *UI) trust(conv chat.Conversation, safetyNumber string) bool {
	name := conv.String()
	if _, err := u.b.Trust(conv, safetyNumber); err != nil {
		u.notice(noticeError, "cannot accept %s's key: %v", name, err)
		return false
	}
	c := u.conversation(conv, true)
	c.IdentityChanged, c.Verified = false, false
	c.notify(noticeInfo, fmt.Sprintf("accepted %s's new identity key; sending is unblocked. Compare safety numbers with /verify %s to mark it verified.", name, name))
	if c == u.open {
		u.pane.follow()
	}
	return true
}

// set changes a setting: /set typing on|off, /set receipts on|off. It
// reports false for a usage error.
func (u *UI) set(args []string) bool {
	onOff := func(b bool) string {
		if b {
			return "on"
		}
		return "off"
	}
	if len(args) == 0 {
		u.notice(noticeInfo, "typing indicators %s, read receipts %s (/set typing on|off, /set receipts on|off)", onOff(u.sendTyping), onOff(u.sendReceipts))
		return true
	}
	var on bool
	switch {
	case len(args) != 2:
	case strings.EqualFold(args[1], "on"):
		on = true
	case strings.EqualFold(args[1], "off"):
	default:
		args = nil
	}
	switch {
	case len(args) == 2 && strings.EqualFold(args[0], "typing"):
		u.sendTyping = on
		u.b.SetSendTyping(on)
		u.notice(noticeInfo, "typing indicators %s", onOff(on))
	case len(args) == 2 && strings.EqualFold(args[0], "receipts"):
		u.sendReceipts = on
		u.b.SetSendReceipts(on)
		u.notice(noticeInfo, "read receipts %s", onOff(on))
	default:
		u.notice(noticeError, "usage: /set typing on|off, /set receipts on|off")
		return false
	}
	return true
}

// completion is the state of Tab cycling through several candidates.
type completion struct {
	base  string // the text before the completed word
	cands []string
	next  int
}

// complete completes the command name or argument being typed (Tab). One
// candidate is filled in; several are listed in the typing line, filled
// in up to their common prefix, and cycled through by further Tabs.
func (u *UI) complete() {
	if c := u.comp; c != nil {
		u.setInput(c.base + c.cands[c.next])
		c.next = (c.next + 1) % len(c.cands)
		u.hint = shownCompletions(c.cands)
		return
	}
	text := u.input.GetText()
	if !strings.HasPrefix(text, "/") || strings.ContainsAny(text, "\n\t") {
		return
	}
	// A path is the rest of the line, spaces and all: after "/file " and
	// after "/save ID ".
	if cmd, rest, ok := strings.Cut(text[1:], " "); ok {
		switch strings.ToLower(cmd) {
		case "file":
			u.completePath(text[:len(text)-len(rest)], rest)
			return
		case "save":
			if id, path, ok := strings.Cut(rest, " "); ok && id != "" {
				u.completePath(text[:len(text)-len(path)], path)
				return
			}
		}
	}
	cut := strings.LastIndexByte(text, ' ') + 1
	base, word := text[:cut], text[cut:]
	prev := splitArgs(base)
	var pool []string
	switch {
	case len(prev) == 0:
		base, word, pool = "/", text[1:], commands
	case len(prev) == 1:
		switch strings.ToLower(strings.TrimPrefix(prev[0], "/")) {
		case "msg", "m", "query":
			for _, c := range u.convs {
				if !c.isSystem() { // nothing to write to
					pool = append(pool, c.name())
				}
			}
		case "verify", "trust":
			for _, c := range u.convs {
				if !c.isSystem() && !c.Conversation.IsGroup() { // nothing to verify or trust
					pool = append(pool, c.name())
				}
			}
		case "set":
			pool = []string{"receipts", "typing"}
		case "group", "g":
			pool = groupSubcommands
		case "save":
			pool = u.fileIDs()
		}
	case len(prev) == 2 && strings.EqualFold(prev[0], "/set"):
		pool = []string{"off", "on"}
	case strings.EqualFold(prev[0], "/group") || strings.EqualFold(prev[0], "/g"):
		pool = u.groupCompletions(strings.ToLower(prev[1]), prev[2:])
	}
	var cands []string
	for _, p := range pool {
		// A name in quotes (a group's title with spaces) completes from
		// its first letters too.
		if strings.HasPrefix(strings.ToLower(strings.TrimPrefix(p, `"`)), strings.ToLower(strings.TrimPrefix(word, `"`))) && !slices.Contains(cands, p) {
			cands = append(cands, p)
		}
	}
	u.offer(base, word, cands, true)
}

// offer completes word, after base, with cands: one is filled in (with a
// space after it if space), several are listed in the typing line and
// filled in up to their common prefix, or cycled through by further Tabs.
func (u *UI) offer(base, word string, cands []string, space bool) {
	switch len(cands) {
	case 0:
		u.hint = "no completions"
	case 1:
		if space {
			u.setInput(base + cands[0] + " ")
		} else {
			u.setInput(base + cands[0])
		}
	default:
		u.hint = shownCompletions(cands)
		if p := commonPrefix(cands); len(p) > len(word) {
			u.setInput(base + p)
			return
		}
		u.comp = &completion{base: base, cands: cands, next: 1}
		u.setInput(base + cands[0])
	}
}

func commonPrefix(words []string) string {
	p := words[0]
	for _, w := range words[1:] {
		for !strings.HasPrefix(w, p) {
			p = p[:len(p)-1]
		}
	}
	for !utf8.ValidString(p) { // not half a character
		p = p[:len(p)-1]
	}
	return p
}

// nextField splits s into its first whitespace-separated field and the
// rest after the separator.
func nextField(s string) (field, rest string) {
	s = strings.TrimLeftFunc(s, unicode.IsSpace)
	i := strings.IndexFunc(s, unicode.IsSpace)
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimLeft(s[i+1:], " ")
}

// canonicalName checks a user name as the server does (protocol.md §5.3):
// 1–32 characters of a-z 0-9 _ . -, A-Z folded to lower case.
func canonicalName(name string) (string, error) {
	const maxLen = 32
	b := []byte(name)
	ok := len(b) >= 1 && len(b) <= maxLen
	for i, c := range b {
		switch {
		case 'A' <= c && c <= 'Z':
			b[i] = c + 'a' - 'A'
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '_', c == '.', c == '-':
		default:
			ok = false
		}
	}
	if !ok {
		return "", fmt.Errorf("invalid user name %q: use 1-%d characters of a-z 0-9 _ . -", sanitizeLine(name), maxLen)
	}
	return string(b), nil
}
