//go:build !unix

package sysx

// RaiseOpenFiles is a no-op where there is no open-file limit to raise.
func RaiseOpenFiles() (uint64, error) { return 0, nil }

// OpenFiles returns 0: unknown.
func OpenFiles() uint64 { return 0 }
