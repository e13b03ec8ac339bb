package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"
)

// followRecheck bounds the wait between two looks at a followed file: the
// only wake-up where no change notification exists, and a safety net where
// one may miss a change (network file systems, a symlink into another
// directory).
const followRecheck = 250 * time.Millisecond

// maxLineBytes bounds a line of a followed file, and so the bytes held
// waiting for a newline: it is the most one publish carries.
const maxLineBytes = maxBatchBytes

// maxFollowIDSuffix is the longest file identity and offset a --follow id
// adds to the prefix: "<dev>:<ino>:<16 hex>:<offset>".
const maxFollowIDSuffix = 20 + 1 + 20 + 1 + 16 + 1 + 19

// firstLineCheck is how much of a file's first line is kept to notice the
// file being truncated and written again past the point read.
const firstLineCheck = 256

// waker reports that a followed file may have changed.
type waker interface {
	// wait returns when the file or its directory may have changed, at
	// most followRecheck later, or with ctx's error once ctx ends.
	wait(ctx context.Context) error
	Close() error
}

// pollWaker wakes every followRecheck.
type pollWaker struct{}

func (pollWaker) wait(ctx context.Context) error {
	t := time.NewTimer(followRecheck)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (pollWaker) Close() error { return nil }

func newPollWaker(string) waker { return pollWaker{} }

// follower reads a file like tail -F, but from its start: it sends each
// complete line with the id <prefix><identity>:<offset>, where identity
// names the file (see fileKey; and a hash of its first line, which tells
// apart two files that have the same device and inode one after the other,
// as after a truncation in place or an inode reused), and offset is the
// line's first byte in the file. Reading the same file again gives the
// same ids; a line of another file never gets one of them.
type follower struct {
	path      string
	prefix    string
	newWaker  func(path string) waker
	chunkSize int
	maxLine   int

	f     *os.File
	key   string // from fileKey, for the file open
	ident string // key and the first line's hash, once the first line is read
	first []byte // the start of the first line, to notice a rewrite
	off   int64  // the offset of buf[0] in f
	buf   []byte // read from f, not yet sent: the start of a line
	chunk []byte
	check []byte // room for first
}

func newFollower(path, prefix string) *follower {
	return &follower{path: path, prefix: prefix, newWaker: newFileWaker, chunkSize: 64 << 10, maxLine: maxLineBytes}
}

// run sends the lines of the file to out until ctx ends (it then returns
// ctx's error) or the file cannot be read. A last line without its newline
// is held until the newline comes, and never sent if ctx ends first; when
// the file is rotated away it is sent as it is, since nothing can complete
// it any more.
func (fl *follower) run(ctx context.Context, out chan<- line) error {
	// Watch before the first read: a change after it then always wakes.
	w := fl.newWaker(fl.path)
	defer w.Close()
	f, err := os.Open(fl.path)
	if err != nil {
		return err
	}
	if err := fl.start(f); err != nil {
		f.Close()
		return err
	}
	defer func() { fl.f.Close() }()
	fl.chunk, fl.check = make([]byte, fl.chunkSize), make([]byte, firstLineCheck)
	for {
		if err := fl.readToEnd(ctx, out); err != nil {
			return err
		}
		replaced, err := fl.checkReplaced(ctx, out)
		if err != nil {
			return err
		}
		if !replaced {
			if err := w.wait(ctx); err != nil {
				return err
			}
		}
	}
}

// start makes f, open at its start, the file followed.
func (fl *follower) start(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	fl.f, fl.key, fl.ident, fl.first, fl.off, fl.buf = f, fileKey(fi), "", nil, 0, fl.buf[:0]
	return nil
}

// readToEnd reads f to its current end and sends the complete lines. A
// file truncated in place is read again from its start, as a new file.
func (fl *follower) readToEnd(ctx context.Context, out chan<- line) error {
	for {
		// Looked for before each read, so that the bytes of a rewritten
		// file past the point read are not taken for the old one's.
		rewritten, err := fl.rewritten()
		if err != nil {
			return err
		}
		if rewritten {
			if _, err := fl.f.Seek(0, io.SeekStart); err != nil {
				return err
			}
			if err := fl.start(fl.f); err != nil {
				return err
			}
		}
		n, err := fl.f.Read(fl.chunk)
		if n > 0 {
			fl.buf = append(fl.buf, fl.chunk[:n]...)
			if err := fl.sendLines(ctx, out, len(fl.buf)-n); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// sendLines sends the complete lines in buf, whose bytes before from hold
// no newline.
func (fl *follower) sendLines(ctx context.Context, out chan<- line, from int) error {
	start := 0
	for {
		i := bytes.IndexByte(fl.buf[from:], '\n')
		if i < 0 {
			break
		}
		end := from + i + 1
		if err := fl.send(ctx, out, fl.buf[start:end]); err != nil {
			return err
		}
		start, from = end, end
	}
	if len(fl.buf)-start > fl.maxLine {
		return fmt.Errorf("the line at offset %d is longer than %d bytes", fl.off, fl.maxLine)
	}
	if start > 0 {
		fl.buf = fl.buf[:copy(fl.buf, fl.buf[start:])]
	}
	return nil
}

// send sends raw, the line at fl.off (with its newline, if it has one).
func (fl *follower) send(ctx context.Context, out chan<- line, raw []byte) error {
	if fl.ident == "" {
		// raw is the first line: lines are read from offset 0.
		h := sha256.Sum256(raw)
		fl.ident = fl.key + hex.EncodeToString(h[:8]) + ":"
		fl.first = bytes.Clone(raw[:min(len(raw), firstLineCheck)])
	}
	l := line{text: bytes.Clone(trimEOL(raw)), id: fl.prefix + fl.ident + strconv.FormatInt(fl.off, 10), off: fl.off}
	select {
	case out <- l:
	case <-ctx.Done():
		return ctx.Err()
	}
	fl.off += int64(len(raw))
	return nil
}

// checkReplaced looks, once f is read to its end, for another file at the
// path: f is then finished and the new file read from its start. It
// reports whether it switched files.
func (fl *follower) checkReplaced(ctx context.Context, out chan<- line) (bool, error) {
	fi, err := fl.f.Stat()
	if err != nil {
		return false, err
	}
	pfi, err := os.Stat(fl.path)
	if err != nil || os.SameFile(fi, pfi) {
		// Gone (being rotated) or unchanged: keep reading the file open.
		return false, nil
	}
	nf, err := os.Open(fl.path)
	if err != nil {
		return false, nil // replaced again: the next look finds it
	}
	// Finish the old file: what was appended since the last read, then a
	// last line without its newline, which nothing will complete now.
	if err := fl.readToEnd(ctx, out); err != nil {
		nf.Close()
		return false, err
	}
	if len(fl.buf) > 0 {
		if err := fl.send(ctx, out, fl.buf); err != nil {
			nf.Close()
			return false, err
		}
	}
	fl.f.Close()
	if err := fl.start(nf); err != nil {
		fl.f = nf // closed by run
		return false, err
	}
	return true, nil
}

// rewritten reports whether f was truncated since it was read: it is
// shorter than what was read, or its first line changed.
func (fl *follower) rewritten() (bool, error) {
	if fl.off == 0 && len(fl.buf) == 0 {
		return false, nil
	}
	fi, err := fl.f.Stat()
	if err != nil {
		return false, err
	}
	if fi.Size() < fl.off+int64(len(fl.buf)) {
		return true, nil
	}
	if fl.first == nil {
		return false, nil
	}
	b := fl.check[:len(fl.first)]
	n, err := fl.f.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	return !bytes.Equal(b[:n], fl.first), nil
}
