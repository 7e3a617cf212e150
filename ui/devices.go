package ui

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/securechat/securechat/chat"
	"github.com/securechat/securechat/client"
)

// /devices: the account's devices, linking one by the code it shows and
// revoking one (docs/design.md §7, the devices command's counterpart).

// devicesCommand runs /devices [approve CODE | revoke N]; what the server
// answers is shown in the pane when it comes.
func (u *UI) devicesCommand(args []string) bool {
	sub := ""
	if len(args) > 0 {
		sub = strings.ToLower(args[0])
	}
	switch {
	case sub == "" || sub == "list":
		u.deviceOp("/devices", func(ctx context.Context) (string, error) {
			devs, err := u.b.AccountDevices(ctx)
			if err != nil {
				return "", err
			}
			var b strings.Builder
			b.WriteString("Your devices:")
			for _, d := range devs {
				fmt.Fprintf(&b, "\n  %d  %s  added %s, last seen %s", d.ID, strconv.Quote(d.Name), chat.FormatTime(d.Added.Local()), chat.FormatTime(d.LastSeen.Local()))
				if d.This {
					b.WriteString("  (this device)")
				}
				if !d.Linked {
					b.WriteString("  not linked (added with login): not sent to")
				}
			}
			return b.String(), nil
		})
		return true
	case sub == "approve" && len(args) >= 2:
		// /devices approve CODE [all|DAYS|none]: the history the new
		// device gets (all of it by default).
		codeArgs := args[1:]
		hist := &client.HistoryOptions{}
		if last := strings.ToLower(codeArgs[len(codeArgs)-1]); len(codeArgs) > 1 && (last == "all" || last == "none" || isDays(last)) {
			codeArgs = codeArgs[:len(codeArgs)-1]
			switch {
			case last == "none":
				hist = nil
			case last != "all":
				days, _ := strconv.Atoi(last)
				hist.Since = time.Now().AddDate(0, 0, -days)
			}
		}
		code := strings.Join(codeArgs, "")
		u.deviceOp("/devices approve", func(ctx context.Context) (string, error) {
			cand, err := u.b.FindDevice(ctx, code)
			if err != nil {
				return "", err
			}
			if err := u.b.ApproveDevice(ctx, cand, hist); err != nil {
				return "", err
			}
			what := "with your history"
			if hist == nil {
				what = "without history"
			}
			return fmt.Sprintf("linked device %d %q to your account, %s", cand.Device, cand.Name, what), nil
		})
		return true
	case sub == "revoke" && len(args) == 2:
		n, err := strconv.ParseUint(args[1], 10, 32)
		if err != nil || n == 0 {
			u.notice(noticeError, "/devices revoke N: N is a device number (/devices lists them)")
			return false
		}
		u.deviceOp("/devices revoke", func(ctx context.Context) (string, error) {
			if err := u.b.RevokeDevice(ctx, uint32(n)); err != nil {
				return "", err
			}
			return fmt.Sprintf("device %d removed from your account", n), nil
		})
		return true
	}
	u.notice(noticeError, "usage: /devices, /devices approve CODE [all|DAYS|none], /devices revoke N")
	return false
}

// isDays reports whether s is a number of days (1 to 36500).
func isDays(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 1 && n <= 36500
}

// deviceOp runs op off the UI goroutine and shows what it says, or why
// it failed, in the conversation open when it was asked.
func (u *UI) deviceOp(what string, op func(ctx context.Context) (string, error)) {
	c := u.open
	hint := what + ": waiting for the server…"
	u.hint = hint
	go func() {
		ctx, cancel := context.WithTimeout(u.ctx, groupTimeout)
		text, err := op(ctx)
		cancel()
		u.update(func() {
			if u.hint == hint {
				u.hint = ""
			}
			if c == nil {
				return
			}
			if err != nil {
				c.notify(noticeError, what+": "+err.Error())
			} else {
				c.notify(noticeInfo, text)
			}
			if c == u.open {
				u.pane.follow()
			}
		})
	}()
}
