//go:build unix

// Package sysx holds the few operating-system calls the server needs.
package sysx

import "syscall"

// RaiseOpenFiles raises the soft open-file limit to the hard limit and
// returns the resulting soft limit.
func RaiseOpenFiles() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	if l.Cur < l.Max {
		want := l
		want.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
			l = want
		}
	}
	return limit(l.Cur), nil
}

// OpenFiles returns the soft open-file limit.
func OpenFiles() uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0
	}
	return limit(l.Cur)
}

// limit reads an Rlimit field: uint64 on Linux and Darwin, int64 on
// FreeBSD, where RLIM_INFINITY is the largest int64 and no limit is
// negative.
func limit[T int64 | uint64](v T) uint64 { return uint64(v) }
