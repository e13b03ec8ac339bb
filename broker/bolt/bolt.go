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
	_ longpoll.Broker = (*Broker)(nil)
	_ longpoll.Pinger = (*Broker)(nil)
)

// Broker is a longpoll.Broker that keeps its topics in a bbolt database
// file. Open one with Open; it is safe for concurrent use.
type Broker struct {
	cfg  config
	db   *bbolt.DB
	path string
	log  *slog.Logger

	watchers watchers

	// The commit queue; see commit.go.
	qmu    sync.Mutex
	queue  []*appendReq
	kick   chan struct{}
	closed atomic.Bool
	// enqueued counts the requests ever queued, commits the transactions
	// that appended; tests and benchmarks read them.
	enqueued, commits atomic.Uint64

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
// newer version, or is not a readable longpoll database.
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
	db, err := openDB(path, cfg.lockTimeout)
	if err != nil {
		return nil, err
	}
	if err := initDB(db, path); err != nil {
		_ = db.Close()
		return nil, err
	}
	b := &Broker{
		cfg:      cfg,
		db:       db,
		path:     path,
		log:      cfg.logger.With("store", "bolt", "path", path),
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

// openDB opens the bbolt file, turning its failures into errors that say
// what to do.
//
// An existing file is first opened read-only and walked page by page on
// this goroutine, where a damaged page makes a panic or fault that can be
// recovered: bbolt's own walk when it opens a file for writing (to rebuild
// the free list, see NoFreelistSync) runs on a goroutine of its own, where
// the same damage would kill the process.
func openDB(path string, lockTimeout time.Duration) (*bbolt.DB, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("bolt: cannot open data file %s: %w: "+
			"check that it is a regular file this user can read and write", path, err)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("bolt: cannot open data file %s: it is not a regular file: "+
			"move it aside or use another data directory", path)
	case fi.Size() > 0:
		if err := checkFile(path, lockTimeout); err != nil {
			return nil, err
		}
	}
	return callBolt(path, func() (*bbolt.DB, error) {
		return bbolt.Open(path, 0o600, boltOptions(lockTimeout))
	}, lockTimeout)
}

// checkFile opens path read-only and checks its format version and every
// page of every bucket.
func checkFile(path string, lockTimeout time.Duration) error {
	db, err := callBolt(path, func() (*bbolt.DB, error) {
		return bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: lockTimeout})
	}, lockTimeout)
	if err != nil {
		return err
	}
	defer db.Close()
	return guard(path, func() error {
		return db.View(func(tx *bbolt.Tx) error {
			if err := checkFormat(tx, path); err != nil {
				return err
			}
			// Stats visits every page of the bucket and its sub-buckets.
			return tx.ForEach(func(_ []byte, b *bbolt.Bucket) error {
				_ = b.Stats()
				return nil
			})
		})
	})
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

// errDamaged marks the errors guard makes of panics and faults.
var errDamaged = errors.New("damaged page")

// guard calls fn, turning a panic or a memory fault in it (bbolt's
// reaction to a damaged file) into an error.
func guard(path string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = corruptError(path, fmt.Errorf("%w: %v", errDamaged, r))
		}
	}()
	return fn()
}

func corruptError(path string, cause error) error {
	return fmt.Errorf("bolt: data file %s is not a readable longpoll database (%w): "+
		"it is corrupt or not a longpoll file; restore it from a backup, "+
		"or move it aside to start with an empty store", path, cause)
}

// initDB creates the buckets of an empty file and checks the format
// version of an existing one.
func initDB(db *bbolt.DB, path string) error {
	return guard(path, func() error {
		return db.Update(func(tx *bbolt.Tx) error {
			if tx.Bucket(bucketMeta) == nil && isEmpty(tx) {
				return createBuckets(tx)
			}
			return checkFormat(tx, path)
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
	if err != nil {
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
	for _, name := range [][]byte{bucketMeta, bucketTopics, bucketMsgs, bucketIDs, bucketDue} {
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
		if err := b.db.Close(); err != nil {
			b.closeErr = fmt.Errorf("bolt: close %s: %w", b.path, err)
		}
		b.log.Info("store closed")
	})
	return b.closeErr
}

// view runs fn in a read transaction, turning a closed database into
// ErrClosed.
func (b *Broker) view(fn func(*bbolt.Tx) error) error {
	if b.closed.Load() {
		return errClosed
	}
	err := guard(b.path, func() error { return b.db.View(fn) })
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return errClosed
	}
	return err
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
