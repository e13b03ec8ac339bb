//go:build linux

package bench

import (
	"io"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawStream writes a request and reads its reply with raw system calls
// inside the runtime poller's wait (syscall.RawConn.Read): the request's
// write is the wait's first step, so any reply that comes after it wakes
// the wait. The descriptor is nonblocking, so neither call can block, and
// the scheduler need not be told of them: told, it wakes its monitor
// thread, which took 8% of a worker's CPU in a fan-out.
type rawStream struct {
	conn    net.Conn
	raw     syscall.RawConn
	pending []byte // the request not yet written
}

func newStream(c net.Conn) (stream, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return netStream{c}, nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	return &rawStream{conn: c, raw: raw}, nil
}

func (s *rawStream) send(req []byte) error {
	s.pending = req
	return nil
}

func (s *rawStream) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var (
		n   int
		err error
	)
	for {
		short := false
		rerr := s.raw.Read(func(fd uintptr) bool {
			if len(s.pending) > 0 {
				w, e := rawCall(unix.SYS_WRITE, fd, s.pending)
				switch {
				case e == syscall.EAGAIN:
				case e != nil:
					err = e
					return true
				}
				s.pending = s.pending[w:]
				if len(s.pending) > 0 {
					short = true // the socket is full: write the rest below
					return true
				}
				return false // wait for the reply
			}
			n, err = rawCall(unix.SYS_READ, fd, p)
			return err != syscall.EAGAIN
		})
		switch {
		case rerr != nil:
			return 0, rerr
		case err != nil:
			return 0, err
		case short:
			if _, err := s.conn.Write(s.pending); err != nil {
				return 0, err
			}
			s.pending = nil
			continue
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// rawCall makes a read or write system call on fd with p.
func rawCall(trap uintptr, fd uintptr, p []byte) (int, error) {
	for {
		r, _, e := unix.RawSyscall(trap, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case 0:
			return int(r), nil
		case syscall.EINTR:
			continue
		}
		return 0, e
	}
}
