package ui_test

import (
	"testing"

	"github.com/securechat/securechat/ui/uitest"
)

// TestDevicesCommands: /devices lists the account's devices, /devices
// approve CODE links the one waiting with it, /devices revoke N removes
// one; a refusal is said in the pane.
func TestDevicesCommands(t *testing.T) {
	t.Parallel()
	x := start(t, uitest.NewBackend("alice"), 110, 30)
	x.term.Type("/devices\n")
	x.waitCalls(1, "AccountDevices")
	x.term.WaitText(t, `1  "this laptop"`)
	x.term.Type("/devices approve abcd efgh jkmn\n")
	x.waitCalls(1, "FindDevice", "abcdefghjkmn")
	x.waitCalls(1, "ApproveDevice", "abcdefghjkmn")
	x.term.WaitText(t, `linked device 2 "phone" to your account`)
	x.term.Type("/devices approve 0000-0000-0000\n")
	x.term.WaitText(t, "/devices approve: no device is waiting with this code")
	x.term.Type("/devices revoke 1\n")
	x.term.WaitText(t, "/devices revoke: a device cannot revoke itself")
	x.term.Type("/devices revoke 2\n")
	x.waitCalls(1, "RevokeDevice", "2")
	x.term.WaitText(t, "device 2 removed from your account")
	x.term.Type("/devices revoke two\n")
	x.term.WaitText(t, "/devices revoke N: N is a device number")
}
