//go:build unix

package bench

import (
	"os/exec"
	"syscall"
	"time"
)

// detach puts cmd in a process group of its own: a Ctrl-C at the terminal
// reaches the bench only, which then stops cmd itself, in order.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// ownCPU returns the user and system CPU time of this process and of its
// children that have been waited for: the bench and its workers (the
// spawned server is waited for only after the figures are taken).
func ownCPU() time.Duration {
	return rusage(syscall.RUSAGE_SELF) + rusage(syscall.RUSAGE_CHILDREN)
}

// selfCPU returns the user and system CPU time of this process alone.
func selfCPU() time.Duration { return rusage(syscall.RUSAGE_SELF) }

func rusage(who int) time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(who, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
