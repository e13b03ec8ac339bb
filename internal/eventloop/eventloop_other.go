//go:build !linux

package eventloop

import (
	"context"
	"errors"
	"net"
)

// Supported reports whether this system has the dense transport.
const Supported = false

// Transport is not available on this system.
type Transport struct{}

// New returns a Transport whose Serve fails.
func New(Config) *Transport { return &Transport{} }

// Serve fails: the dense transport needs Linux.
func (*Transport) Serve(net.Listener) error {
	return errors.New("the dense transport needs Linux; use --transport std")
}

// Shutdown does nothing.
func (*Transport) Shutdown(context.Context) error { return nil }

// Close does nothing.
func (*Transport) Close() error { return nil }
