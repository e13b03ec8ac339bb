//go:build linux || darwin || freebsd

package cli

import (
	"fmt"
	"net"
)

// controlSupported says whether serve offers the control socket here:
// only where the peer of a Unix socket can be identified.
const controlSupported = true

// peerOf returns who connected c: the credentials the kernel recorded at
// connect (credOf), which the peer cannot forge.
func peerOf(c net.Conn) (peer, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return peer{}, fmt.Errorf("not a Unix socket: %T", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return peer{}, err
	}
	var p peer
	var cerr error
	if err := raw.Control(func(fd uintptr) { p, cerr = credOf(int(fd)) }); err != nil {
		return peer{}, err
	}
	return p, cerr
}
