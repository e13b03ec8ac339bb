//go:build linux

package eventloop

import (
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The loop's system calls on its hot path (read, writev, epoll_wait with
// no timeout, epoll_ctl) are raw: none of them can block, as every
// descriptor they touch is nonblocking, so the scheduler need not be told
// of them. Told (syscall.Syscall), the runtime treats each as a possible
// blocking call: the first one after the process was idle wakes the
// runtime's monitor thread, which then polls every 20 µs for a while, and
// one that runs past a monitor tick, as a loopback write that carries the
// receiver's TCP processing can, has its processor handed to another
// thread: on a busy single core, a context switch per delivery or more
// (the fan-out scenarios of longpoll bench show it, docs/performance.md).

// maxIov bounds the buffers of one writev; more are written by the next.
const maxIov = 8

func rawRead(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// rawWritev writes the first maxIov non-empty buffers of bufs.
func rawWritev(fd int, bufs [][]byte) (int, error) {
	var iov [maxIov]unix.Iovec
	k := 0
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		if k == maxIov {
			break
		}
		iov[k].Base = &b[0]
		iov[k].SetLen(len(b))
		k++
	}
	if k == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(k))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// rawEpollWait fetches ready events without waiting.
func rawEpollWait(epfd int, events []syscall.EpollEvent) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func rawEpollCtl(epfd, op, fd int, ev *syscall.EpollEvent) error {
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// rawAccept4 accepts a connection on the nonblocking TCP listener descriptor
// fd, as a nonblocking, close-on-exec descriptor, and returns it with its
// peer's address. Raw like the calls above: a connection's accept, its
// TCP_NODELAY and its close are the only calls of its life outside the
// loop's, and each, told to the scheduler, woke the monitor thread when
// the process had been idle.
func rawAccept4(fd int) (int, string, error) {
	var rsa unix.RawSockaddrAny
	size := uint32(unix.SizeofSockaddrAny)
	nfd, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(fd), uintptr(unsafe.Pointer(&rsa)),
		uintptr(unsafe.Pointer(&size)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return -1, "", e
	}
	return int(nfd), rawPeer(&rsa), nil
}

// rawPeer formats an accepted TCP connection's peer address as net.Conn's
// RemoteAddr().String() does.
func rawPeer(rsa *unix.RawSockaddrAny) string {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), bePort(sa.Port)).String()
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), bePort(sa.Port)).String()
	}
	return ""
}

// bePort reads a port stored in network byte order.
func bePort(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// rawNoDelay sets TCP_NODELAY on fd; it fails on a descriptor that is not
// TCP, which is no matter.
func rawNoDelay(fd int) {
	one := int32(1)
	unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY,
		uintptr(unsafe.Pointer(&one)), 4, 0)
}

// rawClose closes fd. Closing a socket does not block: no descriptor the
// loop holds has SO_LINGER set.
func rawClose(fd int) {
	unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
}
