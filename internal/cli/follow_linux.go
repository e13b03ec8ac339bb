package cli

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// inotifyWaker wakes on any change in the directory of the followed file:
// a write to the file (under its name or, once renamed in the directory,
// under another), its rename, removal or re-creation. Where inotify cannot
// be had (no watches left), the follower polls.
type inotifyWaker struct {
	f   *os.File
	buf []byte
}

func newFileWaker(path string) waker {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return pollWaker{}
	}
	const mask = unix.IN_MODIFY | unix.IN_ATTRIB | unix.IN_CLOSE_WRITE | unix.IN_CREATE | unix.IN_DELETE |
		unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF
	if _, err := unix.InotifyAddWatch(fd, filepath.Dir(path), mask); err != nil {
		unix.Close(fd)
		return pollWaker{}
	}
	// Non-blocking, so the runtime's poller serves it and deadlines work.
	return &inotifyWaker{f: os.NewFile(uintptr(fd), "inotify"), buf: make([]byte, 16<<10)}
}

func (w *inotifyWaker) wait(ctx context.Context) error {
	if err := w.f.SetReadDeadline(time.Now().Add(followRecheck)); err != nil {
		return pollWaker{}.wait(ctx)
	}
	stop := context.AfterFunc(ctx, func() { w.f.SetReadDeadline(time.Now()) })
	defer stop()
	// What the events say does not matter: any of them means look again.
	_, err := w.f.Read(w.buf)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		return pollWaker{}.wait(ctx)
	}
	return nil
}

func (w *inotifyWaker) Close() error { return w.f.Close() }
