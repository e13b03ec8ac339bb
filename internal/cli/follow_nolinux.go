//go:build !linux

package cli

// newFileWaker polls: change notifications would need a dependency here.
func newFileWaker(path string) waker { return newPollWaker(path) }
