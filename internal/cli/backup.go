package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/longpoll/longpoll/broker/bolt"
)

// controlSocket is the Unix socket a disk-store server listens on in its
// data directory, so that `longpoll backup` can take a consistent copy
// while the server holds the store's lock.
const controlSocket = "control.sock"

// backuper is a store that can write a consistent copy of itself.
type backuper interface {
	Backup(ctx context.Context, w io.Writer) (int64, error)
}

// serveControl serves GET /backup on the data directory's control socket
// until ctx ends. It returns a function that waits for it to stop.
func serveControl(ctx context.Context, dir string, b backuper, log *slog.Logger) func() {
	path := filepath.Join(dir, controlSocket)
	// We hold the store's lock, so a socket left here is a dead server's.
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		log.Warn("no control socket: longpoll backup will not work while this server runs", "path", path, "error", err)
		return func() {}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /backup", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		n, err := b.Backup(r.Context(), w)
		if err != nil {
			log.Error("backup failed", "error", err)
			// Abort the stream so the client cannot take a partial copy
			// for a whole one.
			panic(http.ErrAbortHandler)
		}
		log.Info("backup taken", "bytes", n)
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = hs.Serve(ln)
	}()
	stop := context.AfterFunc(ctx, func() { hs.Close() })
	return func() {
		stop()
		hs.Close()
		<-done
		_ = os.Remove(path)
	}
}

func runBackup(ctx context.Context, args []string, io IO) int {
	var dataDir, addr string
	fs := newFlagSet("backup", "FILE", io)
	fs.StringVar(&dataDir, "data-dir", "", "data directory of the disk store to copy (default: the one longpoll serve uses for --addr)")
	fs.StringVar(&addr, "addr", "localhost:8080", "the server's --addr, to find its default data directory when --data-dir is not given")
	pos, code, ok := parseArgs(fs, args, nil, io)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return usageError(io, "backup", "name one FILE to write the copy to")
	}
	if dataDir == "" {
		dataDir = dataDirFor(addr)
	}
	if err := backup(ctx, dataDir, pos[0]); err != nil {
		fmt.Fprintf(io.Stderr, "longpoll backup: %v\n", err)
		return ExitError
	}
	fmt.Fprintf(io.Stderr, "longpoll backup: wrote %s; to restore, stop the server and put it in place as %s in the data directory\n",
		pos[0], bolt.FileName)
	return ExitOK
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
	if !errors.Is(err, bolt.ErrInUse) {
		return err
	}
	return backupFromServer(ctx, filepath.Join(dataDir, controlSocket), file)
}

func backupFromServer(ctx context.Context, sock, file string) (err error) {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://longpoll/backup", nil)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return fmt.Errorf("the store is in use and its server's control socket %s does not answer: %w", sock, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the server answered %s", resp.Status)
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
