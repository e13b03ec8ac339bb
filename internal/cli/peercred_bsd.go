//go:build darwin || freebsd

package cli

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// credOf reads the peer of the Unix socket fd from LOCAL_PEERCRED (what
// getpeereid reads), and its pid where the system tells it (peerPID).
func credOf(fd int) (peer, error) {
	cred, err := unix.GetsockoptXucred(fd, unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	if err != nil {
		return peer{}, fmt.Errorf("LOCAL_PEERCRED: %w", err)
	}
	return peer{uid: int(cred.Uid), pid: peerPID(fd)}, nil
}
