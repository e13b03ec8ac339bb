//go:build unix

package bolt

import (
	"errors"
	"syscall"
)

// isDiskFull reports whether err is a write refused for lack of space:
// the file system is full, the user's quota is spent, or the file has
// reached the largest size allowed.
func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EFBIG)
}
