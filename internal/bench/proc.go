package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTicks is Linux's USER_HZ, the unit of utime and stime in
// /proc/<pid>/stat: 100 on every architecture Go supports.
const clockTicks = 100

// ReadRSS returns the resident set size of process pid, from the VmRSS
// line of /proc/<pid>/status.
func ReadRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseRSS(b)
}

func parseRSS(status []byte) (int64, error) {
	for line := range bytes.SplitSeq(status, []byte("\n")) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := strings.Fields(string(rest))
			if len(f) != 2 || f[1] != "kB" {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				break
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("no VmRSS line in /proc status")
}

// ReadCPU returns the CPU time process pid has used, user and system, from
// /proc/<pid>/stat.
func ReadCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseCPU(b)
}

func parseCPU(stat []byte) (time.Duration, error) {
	// The command name, field 2, is in parentheses and may hold anything:
	// count fields from the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed utime or stime in /proc stat")
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// LoadAverage returns the first three fields of /proc/loadavg, or "" when
// unknown.
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// spawned is a server process the bench started and will stop.
type spawned struct {
	cmd  *exec.Cmd
	done chan struct{}
	out  tail
}

// spawn starts cmdline with /bin/sh -c, "exec" prepended unless it has
// one, so that the shell becomes the server and its pid is the server's.
// The directory of this executable comes first in PATH, so that the word
// "longpoll" names this very binary.
func spawn(cmdline string) (*spawned, error) {
	if !strings.Contains(" "+cmdline, " exec ") {
		cmdline = "exec " + cmdline
	}
	cmd := exec.Command("/bin/sh", "-c", cmdline)
	env := os.Environ()
	if exe, err := os.Executable(); err == nil {
		env = append(env, "PATH="+filepath.Dir(exe)+string(os.PathListSeparator)+os.Getenv("PATH"))
	}
	cmd.Env = withoutEnv(env, WorkerEnv)
	s := &spawned{cmd: cmd, done: make(chan struct{})}
	cmd.Stdout = &s.out
	cmd.Stderr = &s.out
	detach(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting --spawn: %w", err)
	}
	go func() { cmd.Wait(); close(s.done) }()
	return s, nil
}

func (s *spawned) pid() int { return s.cmd.Process.Pid }

// waitReady waits until url answers any HTTP status, the process exits or
// ctx ends.
func (s *spawned) waitReady(ctx context.Context, url string) error {
	c := &http.Client{Timeout: time.Second}
	for {
		if resp, err := c.Get(url); err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("--spawn exited before answering: %s", s.out.String())
		case <-ctx.Done():
			return fmt.Errorf("--spawn did not answer at %s: %w", url, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop ends the server: SIGTERM, then SIGKILL after grace.
func (s *spawned) stop(grace time.Duration) {
	select {
	case <-s.done:
		return
	default:
	}
	if s.cmd.Process.Signal(syscall.SIGTERM) != nil {
		// No SIGTERM on Windows: the process can only be killed.
		s.cmd.Process.Kill()
	}
	select {
	case <-s.done:
	case <-time.After(grace):
		s.cmd.Process.Kill()
		<-s.done
	}
}

func withoutEnv(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// tail keeps the last 4 KiB written to it.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 4096 {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-4096:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}
