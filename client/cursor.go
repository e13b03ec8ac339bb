package client

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// maxCursorFile bounds what ReadCursorFile reads: a cursor of 100 topics
// of 256 bytes is under 40 KiB of text.
const maxCursorFile = 1 << 20

// ReadCursorFile returns the cursor saved in the file at path, or "" when
// the file does not exist or is empty. A file that holds anything but a
// cursor (unpadded base64url text, one line) is an error, so that a wrong
// path is never mistaken for a position nor later overwritten.
func ReadCursorFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if len(b) > maxCursorFile {
		return "", fmt.Errorf("cursor file %s: too large to hold a cursor", path)
	}
	s := strings.TrimSpace(string(b))
	if !isCursorText(s) {
		return "", fmt.Errorf("cursor file %s does not hold a longpoll cursor", path)
	}
	return s, nil
}

// WriteCursorFile replaces the file at path with cursor, atomically: it
// writes a temporary file in the same directory, syncs it, renames it over
// path and syncs the directory, so that a crash leaves either the old
// cursor or the new one, never a torn file.
func WriteCursorFile(path, cursor string) (err error) {
	if !isCursorText(cursor) {
		return errors.New("WriteCursorFile: not a cursor")
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.WriteString(cursor + "\n"); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	// Some systems cannot sync a directory; the rename is atomic anyway.
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, errors.ErrUnsupported) {
		return err
	}
	return nil
}

// isCursorText reports whether s could be a cursor: "" (none) or unpadded
// base64url characters.
func isCursorText(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
