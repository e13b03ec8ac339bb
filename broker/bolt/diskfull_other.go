//go:build !unix && !windows

package bolt

import (
	"errors"
	"syscall"
)

// isDiskFull reports whether err is a write refused for lack of space.
func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC)
}
