//go:build linux

package dense

import (
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
// thread. On a busy single core that was a context switch or more per
// delivery.

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
