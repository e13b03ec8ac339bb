//go:build linux

package bench

import (
	"io"
	"net"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawStream writes a request and reads its reply with raw system calls
// inside the runtime poller's wait (syscall.RawConn.Read): the request's
// write is the wait's first step, so any reply that comes after it wakes
// the wait. The descriptor is nonblocking, so neither call can block, and
// the scheduler need not be told of them: told, it wakes its monitor
// thread, which costs the worker CPU time (the load CPU per delivery that
// longpoll bench --scenario fanout reports shows it).
//
// It also reads the kernel's receive time of what it reads
// (SO_TIMESTAMPNS, with recvmsg in place of read): see arrived.
type rawStream struct {
	conn    net.Conn
	raw     syscall.RawConn
	pending []byte // the request not yet written

	stamps bool      // the socket gives receive times
	at     time.Time // the receive time of the last data read; zero if none came
	msg    unix.Msghdr
	iov    unix.Iovec
	oob    [8]uint64 // control messages, aligned for unix.Cmsghdr
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
	s := &rawStream{conn: c, raw: raw}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err != nil {
		return nil, err
	}
	s.stamps = serr == nil
	return s, nil
}

// arrived returns the kernel's receive time of the last data read.
func (s *rawStream) arrived() (time.Time, bool) { return s.at, !s.at.IsZero() }

// recv reads from fd into p, and takes the receive time that comes with
// the data, where the socket gives one.
func (s *rawStream) recv(fd uintptr, p []byte) (int, error) {
	if !s.stamps {
		return rawCall(unix.SYS_READ, fd, p)
	}
	s.iov.Base = &p[0]
	s.iov.SetLen(len(p))
	s.msg.Iov = &s.iov
	s.msg.SetIovlen(1)
	s.msg.Control = (*byte)(unsafe.Pointer(&s.oob[0]))
	s.msg.SetControllen(int(unsafe.Sizeof(s.oob)))
	for {
		r, _, e := unix.RawSyscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&s.msg)), 0)
		switch e {
		case 0:
		case syscall.EINTR:
			continue
		default:
			return 0, e
		}
		if r > 0 {
			s.at = receiveTime(&s.msg, &s.oob)
		}
		return int(r), nil
	}
}

// receiveTime returns the time in the SCM_TIMESTAMPNS control message of
// msg, whose control buffer is oob, or the zero time if it has none.
func receiveTime(msg *unix.Msghdr, oob *[8]uint64) time.Time {
	hdr := int(unsafe.Sizeof(unix.Cmsghdr{}))
	n := int(unsafe.Sizeof(unix.Timespec{}))
	if int(msg.Controllen) < hdr+n {
		return time.Time{}
	}
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	if h.Level != unix.SOL_SOCKET || h.Type != unix.SCM_TIMESTAMPNS || int(h.Len) < hdr+n {
		return time.Time{}
	}
	ts := (*unix.Timespec)(unsafe.Add(unsafe.Pointer(&oob[0]), unix.CmsgLen(0)))
	return time.Unix(ts.Unix())
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
			n, err = s.recv(fd, p)
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
