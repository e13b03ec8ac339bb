package cli

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// controlSupported says whether serve offers the control socket here:
// only where the peer of a Unix socket can be identified.
const controlSupported = true

// peerOf returns who connected c, from SO_PEERCRED: the credentials the
// kernel recorded at connect, which the peer cannot forge.
func peerOf(c net.Conn) (peer, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return peer{}, fmt.Errorf("not a Unix socket: %T", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return peer{}, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return peer{}, err
	}
	if cerr != nil {
		return peer{}, fmt.Errorf("SO_PEERCRED: %w", cerr)
	}
	return peer{uid: int(cred.Uid), pid: int(cred.Pid)}, nil
}
