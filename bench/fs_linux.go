package main

import (
	"fmt"
	"syscall"
)

// describeFS names the file system dir is on, so that a result says
// whether the server's fsyncs reached a disk (statfs(2) f_type).
func describeFS(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "?"
	}
	switch uint32(st.Type) {
	case 0x01021994:
		return "tmpfs"
	case 0x858458f6:
		return "ramfs"
	case 0xef53: // ext2, ext3 and ext4 share it
		return "ext4"
	case 0x58465342:
		return "xfs"
	case 0x9123683e:
		return "btrfs"
	case 0x794c7630:
		return "overlayfs"
	}
	return fmt.Sprintf("fs type %#x", st.Type)
}
