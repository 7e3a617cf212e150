package ui

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/securechat/securechat/chat"
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
		code := strings.Join(args[1:], "")
		u.deviceOp("/devices approve", func(ctx context.Context) (string, error) {
			cand, err := u.b.FindDevice(ctx, code)
			if err != nil {
				return "", err
			}
			if err := u.b.ApproveDevice(ctx, cand); err != nil {
				return "", err
			}
			return fmt.Sprintf("linked device %d %q to your account", cand.Device, cand.Name), nil
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
	u.notice(noticeError, "usage: /devices, /devices approve CODE, /devices revoke N")
	return false
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
