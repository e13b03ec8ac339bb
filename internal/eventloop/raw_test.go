//go:build linux

package eventloop

import (
	"errors"
	"net"
	"syscall"
	"testing"
)

// The raw accept gives the peer's address as net.Conn's RemoteAddr does,
// for IPv4 and IPv6.
func TestRawAcceptGivesThePeer(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Logf("%s: %v (skipped)", addr, err)
			continue
		}
		f, err := listenerFile(ln)
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		var (
			fd     = -1
			remote string
		)
		for fd < 0 { // the listener is nonblocking; the connection is on its way
			fd, remote, err = rawAccept4(int(f.Fd()))
			if err != nil && !errors.Is(err, syscall.EAGAIN) {
				t.Fatal(err)
			}
		}
		if want := c.LocalAddr().String(); remote != want {
			t.Errorf("%s: peer %q, want %q", addr, remote, want)
		}
		flags, err := fcntlFlags(fd)
		if err != nil || flags&syscall.O_NONBLOCK == 0 {
			t.Errorf("%s: accepted descriptor's flags %#x (%v), want O_NONBLOCK", addr, flags, err)
		}
		rawNoDelay(fd)
		if v, err := syscall.GetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY); err != nil || v == 0 {
			t.Errorf("%s: TCP_NODELAY %d (%v) after rawNoDelay", addr, v, err)
		}
		rawClose(fd)
		if err := syscall.SetNonblock(fd, true); !errors.Is(err, syscall.EBADF) {
			t.Errorf("%s: descriptor still open after rawClose (%v)", addr, err)
		}
		c.Close()
		f.Close()
		ln.Close()
	}
}

func fcntlFlags(fd int) (int, error) {
	r, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFL, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
