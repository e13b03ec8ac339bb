//go:build darwin || freebsd

package cli

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// controlSupported says whether serve offers the control socket here:
// only where the peer of a Unix socket can be identified.
const controlSupported = true

// peerOf returns who connected c, from LOCAL_PEERCRED (what getpeereid
// reads): the credentials the kernel recorded at connect, which the peer
// cannot forge.
func peerOf(c net.Conn) (peer, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return peer{}, fmt.Errorf("not a Unix socket: %T", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return peer{}, err
	}
	var cred *unix.Xucred
	var pid int
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptXucred(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
		pid = peerPID(int(fd))
	}); err != nil {
		return peer{}, err
	}
	if cerr != nil {
		return peer{}, fmt.Errorf("LOCAL_PEERCRED: %w", cerr)
	}
	return peer{uid: int(cred.Uid), pid: pid}, nil
}
