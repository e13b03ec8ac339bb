package bolt

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longpoll/longpoll"
	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// FileName is the name of the database file inside the data directory.
const FileName = "longpoll.db"

var (
	_ longpoll.Broker       = (*Broker)(nil)
	_ longpoll.Pinger       = (*Broker)(nil)
	_ longpoll.TopicLister  = (*Broker)(nil)
	_ longpoll.TopicDeleter = (*Broker)(nil)
	_ longpoll.Revoker      = (*Broker)(nil)
	_ longpoll.NodeRegistry = (*Broker)(nil)
)

// Broker is a longpoll.Broker that keeps its topics in a bbolt database
// file. Open one with Open; it is safe for concurrent use.
type Broker struct {
	cfg  config
	db   *bbolt.DB
	path string
	log  *slog.Logger

	watchers watchers
	// revWatchers are the callbacks of WatchRevocations; nodes the
	// heartbeats of the NodeRegistry, kept in memory (see nodes.go).
	revWatchers revWatchers
	nodes       nodeRegistry

	// writes is held for reading by the writes made outside the
	// committer (DeleteTopic, Revoke): Close takes it for writing, so
	// that none is under way when it marks the store clean.
	writes sync.RWMutex

	// The commit queue; see commit.go.
	qmu    sync.Mutex
	queue  []*appendReq
	kick   chan struct{}
	closed atomic.Bool
	// enqueued counts the requests ever queued, commits the transactions
	// that appended; tests and benchmarks read them.
	enqueued, commits atomic.Uint64
	// fullUntil: until this time (cfg.now, Unix ns) after a write failed
	// for lack of disk space, Append refuses at once.
	fullUntil atomic.Int64

	// When damage was last logged (Unix ns), and how much was not logged
	// since: at most a line a second.
	damageLogged, damageUnlogged atomic.Int64

	// stopping is closed by Close; the committer drains the queue then
	// exits, the reclaimer just exits.
	stopping  chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// ErrInUse reports a data directory locked by another open Broker.
var ErrInUse = errors.New("data directory in use")

// Open opens the broker stored in dir, creating dir and an empty store if
// there is none yet. It fails, naming the path and what to do, if the
// store is in use by another process (wrapping ErrInUse), was written by a
// newer version, or is not a readable longpoll database: empty, truncated,
// damaged (every page is checked, and after a stop that was not clean,
// bbolt's full consistency check runs too), or not a longpoll file.
func Open(dir string, opts ...Option) (*Broker, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, fmt.Errorf("bolt: %w", err)
		}
	}
	if dir == "" {
		return nil, errors.New("bolt: no data directory given")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("bolt: create data directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	log := cfg.logger.With("store", "bolt", "path", path)
	db, err := openDB(path, cfg.lockTimeout, log)
	if err != nil {
		return nil, err
	}
	if err := initDB(db, path, log); err != nil {
		_ = db.Close()
		return nil, err
	}
	removeLeftovers(dir)
	b := &Broker{
		cfg:      cfg,
		db:       db,
		path:     path,
		log:      log,
		kick:     make(chan struct{}, 1),
		stopping: make(chan struct{}),
	}
	b.watchers.init()
	b.wg.Add(2)
	go b.commitLoop()
	go b.reclaimLoop()
	b.log.Info("store opened", "max_messages", cfg.maxMessages, "max_age", cfg.maxAge,
		"max_bytes", cfg.maxBytes, "max_topics", cfg.maxTopics)
	return b, nil
}

// boltOptions are the bbolt settings; doc.go says why.
func boltOptions(lockTimeout time.Duration) *bbolt.Options {
	return &bbolt.Options{
		Timeout:        lockTimeout,
		NoFreelistSync: true,
		FreelistType:   bbolt.FreelistMapType,
		// Readers hold the mmap lock for reading; a writer that must grow
		// the mapping waits for all of them (a Backup among them). A
		// large first mapping, which costs address space only, makes that
		// rare.
		InitialMmapSize: initialMmapSize,
	}
}

// openDB opens the bbolt file, creating it if there is none, and turns
// its failures into errors that say what to do.
//
// An existing file is first checked by checkFile, so that bbolt's own walk
// of every page when it opens a file for writing (to rebuild the free
// list, see NoFreelistSync), which runs on a goroutine of its own where a
// damaged page kills the process, only ever walks a sound file.
func openDB(path string, lockTimeout time.Duration, log *slog.Logger) (*bbolt.DB, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := createFile(path, lockTimeout); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("bolt: cannot open data file %s: %w: "+
			"check that it is a regular file this user can read and write", path, err)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("bolt: cannot open data file %s: it is not a regular file: "+
			"move it aside or use another data directory", path)
	case fi.Size() == 0:
		// createFile never leaves an empty file: this one was emptied.
		return nil, corruptError(path, errors.New("it is empty (0 bytes)"))
	}
	if err := checkFile(path, lockTimeout, log); err != nil {
		return nil, err
	}
	return callBolt(path, func() (*bbolt.DB, error) {
		return bbolt.Open(path, 0o600, boltOptions(lockTimeout))
	}, lockTimeout)
}

// newFilePrefix names the files createFile makes before linking one into
// place.
const newFilePrefix = "." + FileName + ".new-"

// createFile makes an empty store at path whole: written and synced under
// a temporary name, then linked into place (a link never replaces a file
// another process made meanwhile). A crash leaves either no file at path
// or a complete one, never an empty or partial one.
func createFile(path string, lockTimeout time.Duration) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, newFilePrefix+"*")
	if err != nil {
		return fmt.Errorf("bolt: create %s: %w", path, err)
	}
	tmp := f.Name()
	_ = f.Close()
	defer os.Remove(tmp)
	db, err := bbolt.Open(tmp, 0o600, boltOptions(lockTimeout))
	if err != nil {
		return fmt.Errorf("bolt: create %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		if err := createBuckets(tx); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyClean, []byte{1})
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("bolt: create %s: %w", path, err)
	}
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, fs.ErrExist) {
		// A file system without hard links: rename, unless a file
		// appeared meanwhile.
		if _, serr := os.Lstat(path); !errors.Is(serr, fs.ErrNotExist) {
			return nil
		}
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("bolt: create %s: %w", path, err)
		}
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("bolt: create %s: %w", path, err)
	}
	return nil
}

// removeLeftovers removes what createFile left behind when it was
// interrupted, once the store is open.
func removeLeftovers(dir string) {
	names, _ := filepath.Glob(filepath.Join(dir, newFilePrefix+"*"))
	for _, n := range names {
		_ = os.Remove(n)
	}
}

// checkFile checks the file at path before bbolt opens it for writing:
// that it holds every page its meta page counts (not truncated), then,
// under bbolt's shared lock (so no server writes it meanwhile), every page
// by verifyPages, its format version, and, if the last stop was not clean,
// bbolt's full consistency check.
func checkFile(path string, lockTimeout time.Duration, log *slog.Logger) error {
	// First without the lock, so that a truncated or foreign file is
	// named as such rather than failing bbolt's open obscurely. A server
	// writing the file never lets it fall short of its meta page.
	if _, err := fileLayout(path); err != nil {
		return err
	}
	db, err := callBolt(path, func() (*bbolt.DB, error) {
		return bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: lockTimeout})
	}, lockTimeout)
	if err != nil {
		return err
	}
	defer db.Close()
	start := time.Now()
	l, err := fileLayout(path)
	if err != nil {
		return err
	}
	if err := verifyFile(path, l); err != nil {
		return err
	}
	clean := false
	err = guard(path, func() error {
		return db.View(func(tx *bbolt.Tx) error {
			if err := checkFormat(tx, path); err != nil {
				return err
			}
			if meta := tx.Bucket(bucketMeta); meta != nil {
				clean = meta.Get(keyClean) != nil
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	log.Debug("store pages checked", "bytes", l.hwm*l.pageSize, "took", time.Since(start))
	if clean {
		return nil
	}
	log.Warn("the store was not stopped cleanly: checking it in full before serving", "bytes", l.hwm*l.pageSize)
	start = time.Now()
	if err := fullCheck(db, path); err != nil {
		return err
	}
	log.Info("store checked in full", "bytes", l.hwm*l.pageSize, "took", time.Since(start))
	return nil
}

// fileLayout reads the layout of the file at path (see readLayout).
func fileLayout(path string) (layout, error) {
	f, err := os.Open(path)
	if err != nil {
		return layout{}, fmt.Errorf("bolt: cannot open data file %s: %w: "+
			"check that it is a regular file this user can read and write", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return layout{}, fmt.Errorf("bolt: data file %s: %w", path, err)
	}
	l, err := readLayout(f, fi.Size())
	if err != nil {
		return layout{}, corruptError(path, err)
	}
	return l, nil
}

// verifyFile walks every page of the file at path (see verifyPages).
func verifyFile(path string, l layout) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("bolt: data file %s: %w", path, err)
	}
	defer f.Close()
	size := int64(l.hwm * l.pageSize)
	err = recovered(func() error {
		if data, unmap, err := mapFile(f, size); err == nil {
			defer unmap()
			return verifyBytes(data, l)
		}
		return verifyPages(f, l)
	})
	if err != nil {
		return corruptError(path, fmt.Errorf("damaged page: %w", err))
	}
	return nil
}

// fullCheck runs bbolt's consistency check. It runs on a goroutine of
// bbolt's own: its channel is read to the end, so that it is done before
// db is closed and the file unmapped. It panics or faults on no page that
// verifyPages passed.
func fullCheck(db *bbolt.DB, path string) error {
	const shown = 5
	var errs []string
	n := 0
	err := guard(path, func() error {
		return db.View(func(tx *bbolt.Tx) error {
			for err := range tx.Check() {
				if n++; n <= shown {
					errs = append(errs, err.Error())
				}
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	if n > shown {
		errs = append(errs, fmt.Sprintf("and %d more", n-shown))
	}
	if n > 0 {
		return corruptError(path, fmt.Errorf("consistency check failed: %s", strings.Join(errs, "; ")))
	}
	return nil
}

// callBolt calls a bbolt open function and turns its errors, panics and
// faults into errors that say what to do.
func callBolt(path string, open func() (*bbolt.DB, error), lockTimeout time.Duration) (db *bbolt.DB, err error) {
	err = guard(path, func() error {
		db, err = open()
		return err
	})
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("bolt: data directory %s is in use by another longpoll server "+
			"(could not lock %s within %v): stop that server or use another data directory: %w",
			filepath.Dir(path), path, lockTimeout, ErrInUse)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum),
		errors.Is(err, berrors.ErrVersionMismatch):
		return nil, corruptError(path, err)
	case errors.Is(err, errDamaged):
		return nil, err
	default:
		return nil, fmt.Errorf("bolt: cannot open data file %s: %w: "+
			"check that it is a regular file this user can read and write", path, err)
	}
}

// errDamaged marks the errors recovered makes of panics and faults.
var errDamaged = errors.New("damaged page")

// recovered calls fn, turning a panic or a memory fault in it (bbolt's
// reaction to a damaged file) into an error wrapping errDamaged.
func recovered(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", errDamaged, r)
		}
	}()
	return fn()
}

// guard is recovered for the opening of the file at path: a panic is a
// corruptError.
func guard(path string, fn func() error) error {
	err := recovered(fn)
	if errors.Is(err, errDamaged) {
		return corruptError(path, err)
	}
	return err
}

func corruptError(path string, cause error) error {
	return fmt.Errorf("bolt: data file %s is not a readable longpoll database (%w): "+
		"it is corrupt or not a longpoll file; restore it from a backup, "+
		"or move it aside to start with an empty store", path, cause)
}

// initDB creates the buckets of an empty file, or checks the format
// version of an existing one and marks it as this version's; either way
// it clears the clean-stop mark, which Close sets again.
func initDB(db *bbolt.DB, path string, log *slog.Logger) error {
	return guard(path, func() error {
		return db.Update(func(tx *bbolt.Tx) error {
			if tx.Bucket(bucketMeta) == nil && isEmpty(tx) {
				return createBuckets(tx)
			}
			if err := checkFormat(tx, path); err != nil {
				return err
			}
			meta := tx.Bucket(bucketMeta)
			if v, _ := getUint64(meta.Get(keyFormat)); v < formatVersion {
				// Format 1 is read as it is (see formatVersion): only
				// the version changes, so that an older longpoll, which
				// would take checksums for data, refuses the file.
				if err := meta.Put(keyFormat, putUint64(formatVersion)); err != nil {
					return err
				}
				log.Info("store format upgraded", "from", v, "to", formatVersion)
			}
			// Buckets added within format 2: an older longpoll of the
			// same format ignores them, so they need no new version.
			if tx.Bucket(bucketRevoked) == nil {
				if _, err := tx.CreateBucket(bucketRevoked); err != nil {
					return err
				}
				log.Info("store gained the revocations bucket")
			}
			return meta.Delete(keyClean)
		})
	})
}

func isEmpty(tx *bbolt.Tx) bool {
	k, _ := tx.Cursor().First()
	return k == nil
}

// checkFormat checks that tx holds a longpoll store this version reads.
func checkFormat(tx *bbolt.Tx, path string) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		if isEmpty(tx) {
			return nil // a new file: initDB fills it
		}
		return corruptError(path, errors.New("no longpoll metadata"))
	}
	v, err := getUint64(meta.Get(keyFormat))
	if err != nil || v == 0 {
		return corruptError(path, errors.New("bad format version record"))
	}
	if v > formatVersion {
		return fmt.Errorf("bolt: data file %s has format version %d, newer than the %d this "+
			"longpoll reads: run a newer longpoll, or restore a backup made by this version", path, v, formatVersion)
	}
	for _, name := range [][]byte{bucketTopics, bucketMsgs, bucketIDs, bucketDue} {
		if tx.Bucket(name) == nil {
			return corruptError(path, fmt.Errorf("bucket %q missing", name))
		}
	}
	if _, err := getUint64(meta.Get(keyTopicCount)); err != nil {
		return corruptError(path, errors.New("bad topic count record"))
	}
	return nil
}

func createBuckets(tx *bbolt.Tx) error {
	for _, name := range [][]byte{bucketMeta, bucketTopics, bucketMsgs, bucketIDs, bucketDue, bucketRevoked} {
		if _, err := tx.CreateBucket(name); err != nil {
			return err
		}
	}
	meta := tx.Bucket(bucketMeta)
	if err := meta.Put(keyFormat, putUint64(formatVersion)); err != nil {
		return err
	}
	return meta.Put(keyTopicCount, putUint64(0))
}

// Path is the database file's path.
func (b *Broker) Path() string { return b.path }

// Ping reports whether the store is open: nil, or ErrClosed after Close.
func (b *Broker) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.closed.Load() {
		return errClosed
	}
	return nil
}

var errClosed = fmt.Errorf("bolt: %w", longpoll.ErrClosed)

// Close stops the background work, commits the appends already queued,
// and closes the database file. Calls after the first return its result.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.qmu.Lock()
		b.closed.Store(true)
		b.qmu.Unlock()
		close(b.stopping)
		b.wg.Wait()
		b.writes.Lock()
		defer b.writes.Unlock()
		if err := b.markClean(); err != nil {
			b.log.Warn("could not mark the store as stopped cleanly: the next start checks it in full", "err", err)
		}
		if err := b.db.Close(); err != nil {
			b.closeErr = fmt.Errorf("bolt: close %s: %w", b.path, err)
		}
		b.log.Info("store closed")
	})
	return b.closeErr
}

// markClean records, as the last write, that the store was stopped
// cleanly: the next Open skips bbolt's full check.
func (b *Broker) markClean() error {
	return recovered(func() error {
		return b.db.Update(func(tx *bbolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(keyClean, []byte{1})
		})
	})
}

// view runs fn in a read transaction, turning a closed database into
// ErrClosed and a panic into an error wrapping errDamaged.
func (b *Broker) view(fn func(*bbolt.Tx) error) error {
	if b.closed.Load() {
		return errClosed
	}
	err := recovered(func() error { return b.db.View(fn) })
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return errClosed
	}
	return err
}

// logDamage logs damage that op found in topic, at most once a second,
// with the count of the ones not logged since the last line.
func (b *Broker) logDamage(op, topic string, err error) {
	now := time.Now().UnixNano()
	last := b.damageLogged.Load()
	if now-last < int64(time.Second) || !b.damageLogged.CompareAndSwap(last, now) {
		b.damageUnlogged.Add(1)
		return
	}
	b.log.Error("damaged data in the store", "op", op, "topic", topic, "err", err,
		"not_logged_since_last", b.damageUnlogged.Swap(0))
}

// initialMmapSize is the size of the first mapping of the file: address
// space, not memory or disk (except on Windows, where bbolt grows the file
// to it, so it stays bbolt's default there).
var initialMmapSize = func() int {
	if strconv.IntSize == 64 && runtime.GOOS != "windows" {
		return 1 << 30
	}
	return 0
}()
