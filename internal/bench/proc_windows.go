package bench

import (
	"os/exec"
	"syscall"
	"time"
)

// detach starts cmd in a new process group, which Windows keeps out of the
// console's Ctrl-C: the bench alone gets it, and stops cmd itself.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{CreationFlags: syscall.CREATE_NEW_PROCESS_GROUP}
}

// ownCPU returns 0, unknown: Windows has no counterpart of RUSAGE_CHILDREN
// for the workers, and the report says the figure is not measured.
func ownCPU() time.Duration { return 0 }

// selfCPU returns the user and kernel CPU time of this process.
func selfCPU() time.Duration {
	h, err := syscall.GetCurrentProcess()
	if err != nil {
		return 0
	}
	var created, exited, kernel, user syscall.Filetime
	if syscall.GetProcessTimes(h, &created, &exited, &kernel, &user) != nil {
		return 0
	}
	return filetime(kernel) + filetime(user)
}

// filetime reads a FILETIME that holds a duration, in units of 100 ns
// (Filetime.Nanoseconds reads one that holds a date).
func filetime(f syscall.Filetime) time.Duration {
	return time.Duration(int64(f.HighDateTime)<<32|int64(f.LowDateTime)) * 100
}
