package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/longpoll/longpoll/broker/bolt"
)

// controlSocket is the Unix socket a disk-store server listens on in its
// data directory, so that `longpoll backup` can take a consistent copy
// while the server holds the store's lock. Only the server's own user and
// root may use it: the file is mode 0600 and each peer's uid is checked.
const controlSocket = "control.sock"

// controlWriteTimeout bounds each write of a reply on the control socket:
// a backup reader that takes nothing for this long is cut, so it cannot
// keep the store's read transaction (and the pages it pins) open.
var controlWriteTimeout = 30 * time.Second

// controlWriteChunk is the most written under one deadline, so the
// timeout is a floor on progress, not a limit on the reply's size.
const controlWriteChunk = 64 << 10

// controlWriteTimeoutEnv shortens controlWriteTimeout. It exists for the
// tests of cmd/longpoll only, which cannot reach the variable in a child
// process; it is not a setting for users.
const controlWriteTimeoutEnv = "LONGPOLL_TEST_CONTROL_WRITE_TIMEOUT"

// privateDirPattern names the directory the control socket is bound in.
const privateDirPattern = ".ctl*"

// backuper is a store that can write a consistent copy of itself.
type backuper interface {
	Backup(ctx context.Context, w io.Writer) (int64, error)
}

// peer is the process at the other end of a control connection, as the
// kernel recorded it when it connected. pid is 0 where the system does not
// report it.
type peer struct {
	uid, pid int
}

// allowedPeer says whether uid may use the control socket: the server's
// own user, or root.
func allowedPeer(uid int) bool {
	return uid == os.Geteuid() || uid == 0
}

// refusal is the message a refused peer gets, in the server's reply and
// so in its backup command's error.
func refusal(uid int) string {
	return fmt.Sprintf("control socket: uid %d is not allowed; run longpoll backup as the server's user or root", uid)
}

// serveControl serves GET /backup on the data directory's control socket
// until ctx ends. It returns a function that waits for it to stop.
func serveControl(ctx context.Context, dir string, b backuper, log *slog.Logger) func() {
	if !controlSupported {
		log.Info("no control socket on " + runtime.GOOS + ": longpoll backup cannot copy the store while this server runs; stop the server to take a backup")
		return func() {}
	}
	path := filepath.Join(dir, controlSocket)
	ln, err := listenPrivate(dir, path)
	if err != nil {
		log.Warn("no control socket: longpoll backup will not work while this server runs", "path", path, "error", err)
		return func() {}
	}
	timeout := controlWriteTimeout
	if v := os.Getenv(controlWriteTimeoutEnv); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			timeout = d
		}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /backup", backupHandler(b, timeout, log))
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if c, ok := r.Context().Value(controlConnKey{}).(*controlConn); !ok || c.refused != "" {
				w.Header().Set("Connection", "close")
				msg := "control socket: the connecting process could not be identified"
				if ok {
					msg = c.refused
				}
				http.Error(w, msg, http.StatusForbidden)
				return
			}
			mux.ServeHTTP(w, r)
		}),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, controlConnKey{}, c)
		},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       timeout,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = hs.Serve(&controlListener{Listener: ln, timeout: timeout, log: log})
	}()
	stop := context.AfterFunc(ctx, func() { hs.Close() })
	return func() {
		stop()
		hs.Close()
		<-done
		_ = os.Remove(path)
	}
}

// backupHandler streams a consistent copy of b's store. timeout is the
// control socket's write timeout, named in the log when a copy is cut.
func backupHandler(b backuper, timeout time.Duration, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		// A write that fails (the reader gone, or stalled past the write
		// timeout) fails the copy, which ends its read transaction before
		// Backup returns.
		n, err := b.Backup(r.Context(), w)
		if err != nil {
			if r.Context().Err() != nil {
				log.Warn("backup abandoned: the reader went away or took nothing for the write timeout", "bytes", n, "write_timeout", timeout)
			} else {
				log.Error("backup failed", "bytes", n, "error", err)
			}
			// Abort the stream so the client cannot take a partial copy
			// for a whole one.
			panic(http.ErrAbortHandler)
		}
		log.Info("backup taken", "bytes", n)
	}
}

// listenPrivate listens on a Unix socket at path that only this user can
// connect to, whatever the umask: the socket is bound in a fresh 0700
// directory next to path, where nobody else can reach it, made 0600, then
// renamed into place. (Changing the umask instead would race with every
// other goroutine creating files.) The names bound are short, because a
// Unix socket's path is limited to about 100 bytes.
func listenPrivate(dir, path string) (net.Listener, error) {
	// We hold the store's lock, so these are a dead server's leftovers.
	if old, err := filepath.Glob(filepath.Join(dir, privateDirPattern)); err == nil {
		for _, o := range old {
			_ = os.RemoveAll(o)
		}
	}
	tmp, err := os.MkdirTemp(dir, privateDirPattern)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	// MkdirTemp asks for 0700, which a umask can only narrow.
	if err := os.Chmod(tmp, 0o700); err != nil {
		return nil, err
	}
	bound := filepath.Join(tmp, "s")
	ln, err := net.Listen("unix", bound)
	if err != nil {
		if len(bound) > 100 {
			err = fmt.Errorf("%w (a Unix socket's path is limited to about 100 bytes: use a shorter --data-dir)", err)
		}
		return nil, err
	}
	// Close must not unlink by the bound name: the file moves.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(bound, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	if err := os.Rename(bound, path); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// controlListener identifies the peer of every connection it accepts.
// A refused peer's connection is still served, so that its one request
// is answered 403 with the reason, then closed.
type controlListener struct {
	net.Listener
	timeout time.Duration
	log     *slog.Logger
}

func (l *controlListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	cc := &controlConn{Conn: c, timeout: l.timeout}
	p, err := peerOf(c)
	switch {
	case err != nil:
		cc.refused = "control socket: the connecting process could not be identified: " + err.Error()
		l.log.Warn("control socket: refused a connection whose peer could not be identified", "error", err)
	case !allowedPeer(p.uid):
		cc.refused = refusal(p.uid)
		pid := any(p.pid)
		if p.pid == 0 {
			pid = "unknown"
		}
		l.log.Warn("control socket: refused a connection from a user other than the server's or root",
			"uid", p.uid, "pid", pid, "server_uid", os.Geteuid())
	}
	return cc, nil
}

type controlConnKey struct{}

// controlConn is an accepted control connection. Each write must make
// progress within timeout, or the connection fails.
type controlConn struct {
	net.Conn
	timeout time.Duration
	refused string // why the peer is refused; empty if it is allowed
}

func (c *controlConn) Write(p []byte) (int, error) {
	var n int
	for len(p) > 0 {
		chunk := p[:min(len(p), controlWriteChunk)]
		if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
			return n, err
		}
		m, err := c.Conn.Write(chunk)
		n += m
		if err != nil {
			return n, err
		}
		p = p[m:]
	}
	return n, nil
}

func runBackup(ctx context.Context, args []string, io IO) int {
	var dataDir, addr string
	fs := newFlagSet("backup", "FILE", io)
	fs.StringVar(&dataDir, "data-dir", "", "data directory of the disk store to copy (default: the one longpoll serve uses for --addr)")
	fs.StringVar(&addr, "addr", "localhost:8080", "the server's --addr, to find its default data directory when --data-dir is not given; "+
		"resolved as serve binds it, so localhost:8080 is .../127.0.0.1-8080")
	pos, code, ok := parseArgs(fs, args, nil, io)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return usageError(io, "backup", "name one FILE to write the copy to")
	}
	if dataDir == "" {
		dataDir = dataDirFor(boundAddr(addr))
	}
	if err := backup(ctx, dataDir, pos[0]); err != nil {
		fmt.Fprintf(io.Stderr, "longpoll backup: %v\n", err)
		return ExitError
	}
	fmt.Fprintf(io.Stderr, "longpoll backup: wrote %s; to restore, stop the server and put it in place as %s in the data directory\n",
		pos[0], bolt.FileName)
	return ExitOK
}

// boundAddr is the address serve's listener reports when it binds addr,
// which names its default data directory: a host name resolves as
// net.Listen resolves it (localhost to 127.0.0.1), and an empty host is
// the wildcard this system binds ("[::]", or "0.0.0.0" without IPv6).
func boundAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host != "" {
		if ta, err := net.ResolveTCPAddr("tcp", addr); err == nil {
			return ta.String()
		}
		return addr
	}
	p, err := net.LookupPort("tcp", port)
	if err != nil {
		return addr
	}
	// Which wildcard a listener gets depends on the system: ask it.
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		return addr
	}
	defer ln.Close()
	return net.JoinHostPort(ln.Addr().(*net.TCPAddr).IP.String(), strconv.Itoa(p))
}

// backup copies the store in dataDir to file: through the running
// server's control socket when there is one, else directly.
func backup(ctx context.Context, dataDir, file string) error {
	if _, err := os.Stat(filepath.Join(dataDir, bolt.FileName)); err != nil {
		return fmt.Errorf("no store in %s: %w", dataDir, err)
	}
	b, err := bolt.Open(dataDir, bolt.WithLockTimeout(200*time.Millisecond))
	if err == nil {
		defer b.Close()
		return b.BackupFile(ctx, file)
	}
	sock := filepath.Join(dataDir, controlSocket)
	switch {
	case errors.Is(err, bolt.ErrInUse):
	case errors.Is(err, fs.ErrPermission) && socketExists(sock):
		// Another user's store, with its server running: ask the server,
		// which says who may copy it.
	default:
		return err
	}
	if !controlSupported {
		return fmt.Errorf("%w; on %s longpoll backup cannot copy a store while its server runs: stop the server first", err, runtime.GOOS)
	}
	return backupFromServer(ctx, sock, file)
}

func socketExists(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode()&os.ModeSocket != 0
}

func backupFromServer(ctx context.Context, sock, file string) (err error) {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://longpoll/backup", nil)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("the store is in use and its server's control socket %s refused the connection: permission denied; "+
			"run longpoll backup as the server's user or root", sock)
	}
	if err != nil {
		return fmt.Errorf("the store is in use and its server's control socket %s does not answer: %w", sock, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return fmt.Errorf("the server refused (%s): %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	f, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = io.Copy(f, resp.Body); err != nil {
		return fmt.Errorf("copy interrupted: %w", err)
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), file)
}
