//go:build !unix

package sysx

import (
	"errors"
	"fmt"
	"runtime"
)

// RaiseOpenFiles raises nothing where the system has no open-file limit
// that a process can raise (Windows): it returns an error that wraps
// errors.ErrUnsupported, so the server says so, and runs on.
func RaiseOpenFiles() (uint64, error) {
	return 0, fmt.Errorf("raising the open-file limit is not supported on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

// OpenFiles returns 0: unknown.
func OpenFiles() uint64 { return 0 }
