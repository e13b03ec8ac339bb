//go:build unix

package cli

import (
	"os"
	"strconv"
	"syscall"
)

// fileKey is "<device>:<inode>:", the part of a followed file's identity
// that the file system gives.
func fileKey(fi os.FileInfo) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	return strconv.FormatUint(uint64(st.Dev), 10) + ":" + strconv.FormatUint(uint64(st.Ino), 10) + ":"
}
