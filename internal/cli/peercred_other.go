//go:build !linux && !darwin && !freebsd

package cli

import (
	"errors"
	"net"
)

// controlSupported is false here: the peer of a Unix socket cannot be
// identified (or there are no Unix sockets to speak of, as on windows), so
// serve offers no control socket and backup works only with the server
// stopped.
const controlSupported = false

func peerOf(net.Conn) (peer, error) { return peer{}, errors.ErrUnsupported }
