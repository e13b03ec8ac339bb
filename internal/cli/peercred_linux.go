package cli

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// credOf reads the peer of the Unix socket fd from SO_PEERCRED.
func credOf(fd int) (peer, error) {
	cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return peer{}, fmt.Errorf("SO_PEERCRED: %w", err)
	}
	return peer{uid: int(cred.Uid), pid: int(cred.Pid)}, nil
}
