package bolt

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/longpoll/longpoll"
	bbolt "go.etcd.io/bbolt"
)

// wantOpenError opens dir and wants an error that names path and says
// each of the given phrases.
func wantOpenError(t *testing.T, dir, path string, phrases ...string) {
	t.Helper()
	b, err := Open(dir, WithLockTimeout(50*time.Millisecond))
	if err == nil {
		_ = b.Close()
		t.Fatal("Open succeeded, want an error")
	}
	msg := err.Error()
	if !strings.Contains(msg, path) {
		t.Errorf("error %q does not name %s", msg, path)
	}
	for _, p := range phrases {
		if !strings.Contains(msg, p) {
			t.Errorf("error %q does not say %q", msg, p)
		}
	}
}

func TestOpenCreatesDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	b := openDir(t, dir)
	if b.Path() != filepath.Join(dir, FileName) {
		t.Fatalf("Path = %s", b.Path())
	}
	if _, err := os.Stat(b.Path()); err != nil {
		t.Fatal(err)
	}
	if err := b.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func TestOpenNewerFormat(t *testing.T) {
	dir := t.TempDir()
	b := openDir(t, dir)
	mustAppend(t, b, pub("t", "1"))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, FileName)
	setFormat(t, path, formatVersion+1)
	wantOpenError(t, dir, path, fmt.Sprintf("format version %d", formatVersion+1), "newer", "run a newer longpoll")

	// The refusal changed nothing: with the version put back, it opens.
	setFormat(t, path, formatVersion)
	b = openDir(t, dir)
	if st := mustStat(t, b, "t"); st.Head != 1 {
		t.Fatalf("Stat = %+v", st)
	}
}

func setFormat(t *testing.T, path string, v uint64) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyFormat, putUint64(v))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpenCorrupt(t *testing.T) {
	random := func(n int) []byte {
		b := make([]byte, n)
		_, _ = rand.Read(b)
		return b
	}
	tests := []struct {
		name string
		data func(t *testing.T) []byte
	}{
		{"random 100 bytes", func(*testing.T) []byte { return random(100) }},
		{"random 64 KiB", func(*testing.T) []byte { return random(64 << 10) }},
		{"text", func(*testing.T) []byte { return []byte(strings.Repeat("not a database\n", 1000)) }},
		{"pages damaged", func(t *testing.T) []byte {
			// The meta pages are intact and point at garbage: bbolt
			// panics on it, on a goroutine of its own if Open let it.
			data := validFile(t)
			copy(data[8192:], random(64<<10))
			return data
		}},
		{"message page damaged", func(t *testing.T) []byte {
			// Only a leaf page of one topic's messages: Open's checks of
			// the metadata do not read it, its walk of every page does.
			data := validFileWith(t, func(b *Broker) {
				pubs := make([]longpoll.Publication, 40)
				for i := range pubs {
					pubs[i] = pub("t", `"`+strings.Repeat("x", 1000)+`"`)
				}
				pubs[20] = pub("t", `"MARKER`+strings.Repeat("y", 993)+`"`)
				mustAppend(t, b, pubs...)
			})
			i := bytes.Index(data, []byte("MARKER"))
			if i < 0 || bytes.Count(data, []byte("MARKER")) != 1 {
				t.Fatal("marker not found once")
			}
			page := i / 4096 * 4096
			copy(data[page:page+16], random(16))
			return data
		}},
		{"truncated", func(t *testing.T) []byte { return validFile(t)[:8192] }},
		{"both meta pages damaged", func(t *testing.T) []byte {
			data := validFile(t)
			copy(data[16:4096], random(4096-16))
			copy(data[4096+16:8192], random(4096-16))
			return data
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, FileName)
			data := tt.data(t)
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			wantOpenError(t, dir, path, "not a readable longpoll database", "restore it from a backup")
			// Never a silent fresh start: the file is as it was.
			if got, err := os.ReadFile(path); err != nil || string(got) != string(data) {
				t.Fatalf("the file was changed (%v)", err)
			}
		})
	}
}

// validFile returns the bytes of a small valid store.
func validFile(t *testing.T) []byte {
	t.Helper()
	return validFileWith(t, func(b *Broker) { mustAppend(t, b, pub("t", "1")) })
}

// validFileWith returns the bytes of a store that fill has filled.
func validFileWith(t testing.TB, fill func(*Broker)) []byte {
	t.Helper()
	dir := t.TempDir()
	b := openDir(t, dir)
	fill(b)
	used, _ := sizes(t, b)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	// Past the pages in use the file is only room to grow into.
	return data[:used]
}

func TestOpenForeignBoltFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucket([]byte("someone-else"))
		return err
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	wantOpenError(t, dir, path, "not a readable longpoll database", "no longpoll metadata")
}

func TestOpenUnreadable(t *testing.T) {
	t.Run("file is a directory", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, FileName)
		if err := os.Mkdir(path, 0o700); err != nil {
			t.Fatal(err)
		}
		wantOpenError(t, dir, path, "cannot open data file")
	})
	t.Run("directory is a file", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		if err := os.WriteFile(dir, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		wantOpenError(t, dir, dir, "data directory")
	})
	t.Run("no permission", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root reads any file")
		}
		dir := t.TempDir()
		path := filepath.Join(dir, FileName)
		if err := os.WriteFile(path, validFile(t), 0o000); err != nil {
			t.Fatal(err)
		}
		wantOpenError(t, dir, path, "cannot open data file")
	})
}

func TestOpenInUse(t *testing.T) {
	dir := t.TempDir()
	b := openDir(t, dir)
	mustAppend(t, b, pub("t", "1"))
	wantOpenError(t, dir, filepath.Join(dir, FileName), "in use by another longpoll server")
	// The first broker is unharmed, and once it is closed the directory
	// opens.
	mustAppend(t, b, pub("t", "2"))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openDir(t, dir)
	if st := mustStat(t, b, "t"); st.Head != 2 {
		t.Fatalf("Stat = %+v", st)
	}
}

func TestOpenBadOptions(t *testing.T) {
	for name, o := range map[string]Option{
		"max messages":     WithMaxMessages(0),
		"max age":          WithMaxAge(-time.Second),
		"max bytes":        WithMaxBytes(0),
		"max topics":       WithMaxTopics(-1),
		"clock":            WithClock(nil),
		"logger":           WithLogger(nil),
		"lock timeout":     WithLockTimeout(0),
		"reclaim interval": WithReclaimInterval(0),
	} {
		dir := t.TempDir()
		if b, err := Open(dir, o); err == nil {
			_ = b.Close()
			t.Errorf("Open with a bad %s succeeded", name)
		}
	}
	if _, err := Open(""); err == nil {
		t.Error(`Open("") succeeded`)
	}
}

func TestAfterClose(t *testing.T) {
	b := openTest(t)
	mustAppend(t, b, pub("t", "1"))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ctx := t.Context()
	for name, err := range map[string]error{
		"Ping":   b.Ping(ctx),
		"Append": second(b.Append(ctx, []longpoll.Publication{pub("t", "2")})),
		"Read":   second(b.Read(ctx, "t", longpoll.Position{}, 1)),
		"Stat":   second(b.Stat(ctx, "t")),
		"Backup": second(b.Backup(ctx, nil)),
	} {
		if !errors.Is(err, longpoll.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	b.Watch("t", func(string) {})()
}

func second[T any](_ T, err error) error { return err }
