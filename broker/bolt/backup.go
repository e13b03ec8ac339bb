package bolt

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	bbolt "go.etcd.io/bbolt"
)

// Backup writes a consistent copy of the database file to w while the
// broker keeps running, and returns the bytes written. The copy is what a
// read transaction sees: every Append acknowledged before Backup began, and
// no partial one. To restore, put the copy as FileName in an empty data
// directory and Open it.
//
// Appends go on during the copy, but the pages they free cannot be reused
// until it ends, so the file may grow while a long backup runs.
func (b *Broker) Backup(ctx context.Context, w io.Writer) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var n int64
	err := b.view(func(tx *bbolt.Tx) error {
		var err error
		n, err = tx.WriteTo(ctxWriter{ctx, b.stopping, w})
		return err
	})
	if ctxErr := ctx.Err(); err != nil && ctxErr != nil {
		return n, ctxErr
	}
	if err != nil {
		if b.closed.Load() {
			return n, errClosed
		}
		return n, fmt.Errorf("bolt: backup %s: %w", b.path, err)
	}
	return n, nil
}

// BackupFile writes a consistent copy of the database to path: to a
// temporary file in the same directory, synced, then renamed over path, so
// that path is always either the old file or a complete new copy.
func (b *Broker) BackupFile(ctx context.Context, path string) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("bolt: backup: %w", err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	if _, err := b.Backup(ctx, bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("bolt: backup to %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("bolt: backup to %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("bolt: backup to %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("bolt: backup to %s: %w", path, err)
	}
	// The rename is durable once the directory is synced.
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("bolt: backup to %s: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	// Some systems cannot sync a directory; the rename stands anyway.
	if errors.Is(err, os.ErrInvalid) {
		return nil
	}
	return err
}

// ctxWriter fails writes once ctx is done or the broker is closing, so a
// long copy stops promptly (Close waits for it: bbolt closes only once
// every read transaction has ended).
type ctxWriter struct {
	ctx     context.Context
	closing <-chan struct{}
	w       io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	select {
	case <-c.closing:
		return 0, errClosed
	default:
	}
	return c.w.Write(p)
}
