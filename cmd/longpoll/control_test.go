//go:build linux || darwin || freebsd

package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestControlSocketModeUnderUmask: with umask 000 the control socket is
// still mode 0600, and the private directory it was bound in is gone.
func TestControlSocketModeUnderUmask(t *testing.T) {
	dir := t.TempDir()
	s := startServerVia(t, []string{"sh", "-c", `umask 000; exec "$0" "$@"`}, nil, "--store", "disk", "--data-dir", dir)
	if runtime.GOOS == "linux" {
		// The condition under test: the server really runs with umask 000.
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
		if err != nil || !regexp.MustCompile(`(?m)^Umask:\s+0+$`).Match(status) {
			t.Fatalf("the server does not run with umask 000: %v\n%s", err, status)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, "control.sock"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket mode %v, want a socket with 0600", fi.Mode())
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".ctl*")); len(left) != 0 {
		t.Fatalf("the private directory was left behind: %v", left)
	}
}

// TestControlSocketRefusesOtherUsers runs longpoll backup as uid 65534
// against a root server whose data directory anyone may traverse: the
// socket's mode refuses it, and once the socket is made 0666 the peer
// check does, with the reason in the command's error and the server's log.
func TestControlSocketRefusesOtherUsers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs longpoll backup as uid 65534 through SysProcAttr.Credential")
	}
	root := t.TempDir()
	// t.TempDir makes 0700 directories; open the path to the data
	// directory to everyone, so that only the socket itself keeps
	// uid 65534 out.
	for _, d := range []string{filepath.Dir(root), root} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for d := filepath.Dir(filepath.Dir(root)); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			t.Skipf("%s is not traversable by other users (%v %v); set TMPDIR elsewhere", d, fi.Mode(), err)
		}
		if d == filepath.Dir(d) {
			break
		}
	}
	data, bin, out := filepath.Join(root, "data"), filepath.Join(root, "bin"), filepath.Join(root, "out")
	for _, d := range []string{data, bin, out} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(out, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	// The test binary's directory is root's alone: give uid 65534 a copy.
	exe, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	nobodyBinary := filepath.Join(bin, "longpoll")
	if err := os.WriteFile(nobodyBinary, exe, 0o755); err != nil {
		t.Fatal(err)
	}

	s := startServer(t, nil, "--store", "disk", "--data-dir", data)
	mustPublish(t, s.url, `{"topic":"secret","data":"for root only"}`)
	backupAs := func(cred *syscall.Credential) (string, error) {
		cmd := exec.Command(nobodyBinary, "backup", "--data-dir", data, filepath.Join(out, "copy.db"))
		cmd.Dir = out
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	exitedWith1 := func(err error) bool {
		var ee *exec.ExitError
		return errors.As(err, &ee) && ee.ExitCode() == 1
	}

	msg, err := backupAs(nobody)
	if !exitedWith1(err) || !strings.Contains(msg, "control.sock") || !strings.Contains(msg, "permission denied") {
		t.Fatalf("uid 65534 against the 0600 socket: %v, want exit 1 and permission denied on the socket:\n%s", err, msg)
	}
	t.Logf("refused by the mode: %s", msg)
	if strings.Contains(s.logText(), "refused a connection") {
		t.Fatalf("the socket's mode should have kept uid 65534 from connecting at all:\n%s", s.logText())
	}

	if err := os.Chmod(filepath.Join(data, "control.sock"), 0o666); err != nil {
		t.Fatal(err)
	}
	msg, err = backupAs(nobody)
	want := "control socket: uid 65534 is not allowed; run longpoll backup as the server's user or root"
	if !exitedWith1(err) || !strings.Contains(msg, want) {
		t.Fatalf("uid 65534 against a 0666 socket: %v, want exit 1 and %q:\n%s", err, want, msg)
	}
	t.Logf("refused by the peer check: %s", msg)
	waitLog(t, s, "refused a connection")
	line := regexp.MustCompile(`(?m)^.*refused a connection.*$`).FindString(s.logText())
	if !strings.Contains(line, "level=WARN") || !strings.Contains(line, "uid=65534") || !regexp.MustCompile(`pid=[1-9]`).MatchString(line) {
		t.Fatalf("the server's refusal line lacks the level, uid or pid: %s", line)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Fatalf("a refused backup left files: %v", entries)
	}

	// Root may.
	if msg, err := backupAs(nil); err != nil {
		t.Fatalf("root's backup: %v\n%s", err, msg)
	}
	if fi, err := os.Stat(filepath.Join(out, "copy.db")); err != nil || fi.Size() == 0 {
		t.Fatalf("root's backup wrote nothing: %v", err)
	}
}

// TestControlSocketCutsStalledReader: a backup reader that stops reading
// is cut at the write timeout, which ends the store's read transaction
// (the server logs the end only once the copy has returned); the server
// goes on serving, its control socket included.
func TestControlSocketCutsStalledReader(t *testing.T) {
	const timeout = 2 * time.Second
	dir := t.TempDir()
	s := startServer(t, []string{"LONGPOLL_TEST_CONTROL_WRITE_TIMEOUT=" + timeout.String()},
		"--store", "disk", "--data-dir", dir, "--retention-bytes", "1000000000")
	// About 6 MB, far more than the socket buffers hold.
	payload := strings.Repeat("0123456789abcdef", 3750)
	for b := range 6 {
		var body strings.Builder
		body.WriteString(`{"messages":[`)
		for i := range 16 {
			if i > 0 {
				body.WriteString(",")
			}
			fmt.Fprintf(&body, `{"topic":"big","data":"%d-%d-%s"}`, b, i, payload)
		}
		body.WriteString("]}")
		mustPublish(t, s.url, body.String())
	}
	if fi, err := os.Stat(filepath.Join(dir, "longpoll.db")); err != nil || fi.Size() < 5<<20 {
		t.Fatalf("store missing or too small for the test: %v", err)
	}

	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	conn, err := d.DialContext(t.Context(), "unix", filepath.Join(dir, "control.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, "GET /backup HTTP/1.1\r\nHost: longpoll\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// Never read: the server's writes stall once the buffers are full.
	waitLog(t, s, "backup abandoned")
	cut := time.Since(start)
	if cut < timeout {
		t.Fatalf("cut after %v, before the write timeout %v", cut, timeout)
	}
	t.Logf("stalled reader cut after %v (write timeout %v)", cut, timeout)

	// The connection is closed: what the buffers held, then the end,
	// with no final chunk (the copy is not mistaken for a whole one).
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server did not close the stalled connection (read %d bytes)", len(got))
	}
	if !bytes.HasPrefix(got, []byte("HTTP/1.1 200 OK\r\n")) || bytes.HasSuffix(got, []byte("\r\n0\r\n\r\n")) {
		t.Fatalf("want a 200 cut short; got %d bytes: %.80q ... %q", len(got), got, got[max(0, len(got)-16):])
	}
	t.Logf("read %d bytes before the end", len(got))

	mustPublish(t, s.url, `{"topic":"after","data":"still here"}`)
	r, err := pollOnce(t.Context(), s.url, "topic=after&since=earliest&timeout=0")
	if err != nil || len(r.Messages) != 1 || string(r.Messages[0].Data) != `"still here"` {
		t.Fatalf("poll after the cut: %v %+v", err, r)
	}
	copyPath := filepath.Join(t.TempDir(), "copy.db")
	if out, err := exec.Command(binary, "backup", "--data-dir", dir, copyPath).CombinedOutput(); err != nil {
		t.Fatalf("backup after the cut: %v\n%s", err, out)
	}
	if fi, err := os.Stat(copyPath); err != nil || fi.Size() < 5<<20 {
		t.Fatalf("backup after the cut is short: %v", err)
	}
}

// TestBackupAddrAsServeBinds runs the documented `longpoll backup --addr`
// against a server started with the same --addr and the default data
// directory: backup must find the directory serve named after the address
// it bound (localhost:PORT is 127.0.0.1-PORT, :PORT the wildcard's).
func TestBackupAddrAsServeBinds(t *testing.T) {
	for _, tc := range []struct {
		name, host string
		extra      []string
	}{
		{"localhost", "localhost", nil},
		{"wildcard", "", []string{"--allow-unauthenticated"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, port, _ := net.SplitHostPort(freeAddr(t))
			addr := net.JoinHostPort(tc.host, port)
			env := []string{"XDG_DATA_HOME=" + t.TempDir()}
			s := startServer(t, env, append([]string{"--addr", addr, "--store", "disk"}, tc.extra...)...)
			base := "http://127.0.0.1:" + port
			mustPublish(t, base, `{"topic":"b","id":"m1","data":"backed up"}`)

			copyDir := t.TempDir()
			cmd := exec.Command(binary, "backup", "--addr", addr, "copy.db")
			cmd.Dir = copyDir
			cmd.Env = append(os.Environ(), env...)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("longpoll backup --addr %s copy.db: %v\n%s\nserver log:\n%s", addr, err, out, s.logText())
			}
			if err := os.Rename(filepath.Join(copyDir, "copy.db"), filepath.Join(copyDir, "longpoll.db")); err != nil {
				t.Fatal(err)
			}
			s2 := startServer(t, nil, "--store", "disk", "--data-dir", copyDir)
			r, err := pollOnce(t.Context(), s2.url, "topic=b&since=earliest&timeout=0")
			if err != nil || len(r.Messages) != 1 || r.Messages[0].ID != "m1" || string(r.Messages[0].Data) != `"backed up"` {
				t.Fatalf("the copy does not hold the message: %v %+v", err, r)
			}
		})
	}
}
