package bolt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/internal/testrun"
	bbolt "go.etcd.io/bbolt"
)

// busyFile returns the bytes of a store with branch pages, overflow
// pages, ids and several topics, and its layout.
func busyFile(t *testing.T) ([]byte, layout) {
	t.Helper()
	data := validFileWith(t, func(b *Broker) {
		var pubs []longpoll.Publication
		for i := range 1500 {
			pubs = append(pubs, pubID("many", fmt.Sprintf("id-%d", i), fmt.Sprintf(`{"i":%d,"s":"%s"}`, i, strings.Repeat("m", i%200))))
		}
		for i := range 40 {
			pubs = append(pubs, pub(fmt.Sprintf("few.%d", i), `"x"`))
		}
		pubs = append(pubs, pub("big", `"`+strings.Repeat("b", 20000)+`"`))
		mustAppend(t, b, pubs...)
	})
	l, err := readLayout(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	return data, l
}

// reachedPages lists the pages verifyPages reaches in a sound file.
func reachedPages(t *testing.T, data []byte, l layout) []uint64 {
	t.Helper()
	v := &verifier{f: bytes.NewReader(data), l: l, ps: int(l.pageSize), seen: make([]uint64, (l.hwm+63)/64), freed: make([]uint64, (l.hwm+63)/64)}
	if _, err := v.tree(l.root, nil, nil, 0); err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for id := uint64(2); id < l.hwm; id++ {
		if v.seen[id/64]&(1<<(id%64)) != 0 {
			ids = append(ids, id)
		}
	}
	return ids
}

// bboltCheck runs bbolt's own check of the file at path.
func bboltCheck(t testing.TB, path string) []error {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return []error{err}
	}
	defer db.Close()
	var errs []error
	err = db.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	return errs
}

// verifyPages passes no file that bbolt's own check faults: every random
// damage to the pages in use that it lets through, bbolt's check passes
// too (a fault there would kill this test), and the store opens and reads.
func TestVerifyAsStrictAsBbolt(t *testing.T) {
	clean, l := busyFile(t)
	if err := verifyPages(bytes.NewReader(clean), l); err != nil {
		t.Fatalf("a sound file: %v", err)
	}
	pages := reachedPages(t, clean, l)
	ps := int(l.pageSize)
	rng := rand.New(rand.NewPCG(28, 8))
	refused, passed := 0, 0
	for i := range 300 {
		data := bytes.Clone(clean)
		page := int(pages[rng.IntN(len(pages))])
		var what string
		switch kind := rng.IntN(4); kind {
		case 0: // a bit of the page header
			bit := rng.IntN(16 * 8)
			data[page*ps+bit/8] ^= 1 << (bit % 8)
			what = fmt.Sprintf("header bit %d", bit)
		case 1: // a bit of the first elements
			bit := rng.IntN(16 * 8 * 8)
			data[page*ps+16+bit/8] ^= 1 << (bit % 8)
			what = fmt.Sprintf("element bit %d", bit)
		case 2: // a byte anywhere in the page
			off := rng.IntN(ps)
			data[page*ps+off] = byte(rng.IntN(256))
			what = fmt.Sprintf("byte %d", off)
		default: // a bit of a key
			count := int(binary.NativeEndian.Uint16(data[page*ps+10:]))
			if count == 0 {
				continue
			}
			e := page*ps + 16 + rng.IntN(count)*16
			if e+16 > len(data) {
				continue
			}
			pos, ksize := int(binary.NativeEndian.Uint32(data[e+4:])), int(binary.NativeEndian.Uint32(data[e+8:]))
			if data[page*ps+8] == flagBranch {
				pos, ksize = int(binary.NativeEndian.Uint32(data[e:])), int(binary.NativeEndian.Uint32(data[e+4:]))
			}
			if ksize == 0 || e+pos+ksize > len(data) {
				continue
			}
			bit := rng.IntN(ksize * 8)
			data[e+pos+bit/8] ^= 1 << (bit % 8)
			what = fmt.Sprintf("key bit %d", bit)
		}
		if err := verifyPages(bytes.NewReader(data), l); err != nil {
			refused++
			continue
		}
		passed++
		dir := t.TempDir()
		path := filepath.Join(dir, FileName)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if errs := bboltCheck(t, path); len(errs) > 0 {
			t.Fatalf("damage %d (page %d, %s) passed verifyPages, but bbolt's check says %v", i, page, what, errs)
		}
		b, err := Open(dir, WithLockTimeout(time.Second))
		if err != nil {
			// Sound pages whose content is not a longpoll store's.
			if !strings.Contains(err.Error(), "not a readable longpoll database") || !strings.Contains(err.Error(), path) {
				t.Fatalf("damage %d (page %d, %s) passed the page checks, then Open says %v", i, page, what, err)
			}
			continue
		}
		for _, topic := range []string{"many", "few.7", "big"} {
			if _, err := b.Read(t.Context(), topic, longpoll.Position{}, 2000); err != nil && !strings.Contains(err.Error(), "damaged") {
				t.Errorf("damage %d (page %d, %s): Read(%s): %v", i, page, what, topic, err)
			}
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d damaged files refused, %d passed (damage in bytes no check reads)", refused, passed)
	if refused < 100 || passed < 10 {
		t.Fatalf("%d refused, %d passed: the damage does not test what it should", refused, passed)
	}
}

// The one-bit damage to a key's order that crashed the server in 5 of 10
// starts (bbolt's walk panicked on a goroutine of its own): refused with
// an error naming the file, every time, and no goroutine left behind
// (goleak checks at the end).
func TestOpenKeyOrderDamage(t *testing.T) {
	clean, l := busyFile(t)
	ps := int(l.pageSize)
	n := 0
	for _, id := range reachedPages(t, clean, l) {
		off := int(id) * ps
		if binary.NativeEndian.Uint16(clean[off+8:]) != flagLeaf || binary.NativeEndian.Uint16(clean[off+10:]) < 3 {
			continue
		}
		e := off + 16 + 16 // the second element
		pos, ksize := int(binary.NativeEndian.Uint32(clean[e+4:])), int(binary.NativeEndian.Uint32(clean[e+8:]))
		if ksize != 8 {
			continue // a seq key
		}
		data := bytes.Clone(clean)
		data[e+pos] ^= 0x40 // seq + 2^62: after its successor
		dir := t.TempDir()
		path := filepath.Join(dir, FileName)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		wantOpenError(t, dir, path, "not a readable longpoll database", "out of order")
		if n++; n == 10 {
			break
		}
	}
	if n < 10 {
		t.Fatalf("only %d leaf pages of seq keys", n)
	}
}

func TestOpenEmptyOrTruncated(t *testing.T) {
	clean, l := busyFile(t)
	ps := int(l.pageSize)
	tests := []struct {
		name string
		size int
		say  string
	}{
		{"empty", 0, "empty (0 bytes)"},
		{"a few bytes", 50, "too short"},
		{"a meta page cut", 100, "truncated"},
		{"one page", ps, "truncated"},
		{"two pages", 2 * ps, "truncated"},
		{"one page short", len(clean) - ps, "truncated"},
		{"one byte short", len(clean) - 1, "truncated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, FileName)
			if err := os.WriteFile(path, clean[:tt.size], 0o600); err != nil {
				t.Fatal(err)
			}
			wantOpenError(t, dir, path, "not a readable longpoll database", tt.say, "restore it from a backup")
			if fi, err := os.Stat(path); err != nil || fi.Size() != int64(tt.size) {
				t.Fatalf("the file was changed: %v", err)
			}
		})
	}
}

// A new store is created whole under another name and linked into place;
// what an interrupted creation left is removed once a store opens.
func TestCreateLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, newFilePrefix+"12345")
	if err := os.WriteFile(stale, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := openDir(t, dir)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	names, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0].Name() != FileName {
		t.Fatalf("data directory holds %v, want %s alone", names, FileName)
	}
}

// The full check runs after a stop that was not clean, and only then; a
// file whose pages are sound but which bbolt's check faults is refused.
func TestUncleanStopChecksInFull(t *testing.T) {
	const fullCheck = "checking it in full"
	dir := t.TempDir()
	var logs testrun.Buffer
	logger := WithLogger(slog.New(slog.NewTextHandler(&logs, nil)))
	b := openDir(t, dir, logger)
	if strings.Contains(logs.String(), fullCheck) {
		t.Errorf("a new store was checked in full:\n%s", logs.String())
	}
	mustAppend(t, b, markedPubs("t", 20)...)
	// The file as a crash would leave it: what was committed, and no
	// clean-stop mark.
	running, err := os.ReadFile(b.Path())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	b = openDir(t, dir, logger)
	if strings.Contains(logs.String(), fullCheck) {
		t.Errorf("checked in full after a clean stop:\n%s", logs.String())
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	crashed := t.TempDir()
	if err := os.WriteFile(filepath.Join(crashed, FileName), running, 0o600); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	b = openDir(t, crashed, logger)
	if !strings.Contains(logs.String(), fullCheck) || !strings.Contains(logs.String(), "store checked in full") {
		t.Errorf("not checked in full after a crash:\n%s", logs.String())
	}
	wantPage(t, mustRead(t, b, "t", longpoll.Position{}, 100), nil, 1, 20, 20)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// A free list stored by bbolt (as its compact command writes one),
	// missing a page: every page is sound, but bbolt's check finds a page
	// neither in use nor free.
	db, err := bbolt.Open(filepath.Join(crashed, FileName), 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		if err := tx.Bucket(bucketMeta).Delete(keyClean); err != nil {
			return err
		}
		return tx.Bucket(bucketMsgs).Bucket([]byte("t")).Delete(seqKey(1))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(crashed, FileName)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l, err := readLayout(bytes.NewReader(data), int64(len(data)))
	if err != nil || l.freelist == noFreelist {
		t.Fatalf("no stored free list: %+v, %v", l, err)
	}
	count := data[int(l.freelist*l.pageSize)+10:]
	if n := binary.NativeEndian.Uint16(count); n == 0 || n == 0xFFFF {
		t.Fatalf("free list of %d pages", n)
	} else {
		binary.NativeEndian.PutUint16(count, n-1)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	wantOpenError(t, crashed, path, "not a readable longpoll database", "consistency check failed", "unreachable unfreed")
}

// FuzzVerifyPages: any bytes are read without a panic, and a file whose
// pages the walk passes is one bbolt's own check passes too (a fault
// there kills the fuzzer, which is the point).
func FuzzVerifyPages(f *testing.F) {
	seed := validFileWith(f, func(b *Broker) {
		mustAppend(f, b, pubID("t", "id-1", `{"a":1}`), pub("t", `"two"`), pub("u", `3`))
	})
	f.Add(seed)
	f.Add(seed[:len(seed)/2])
	f.Add([]byte{})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := readLayout(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		if verifyBytes(data, l) != nil || verifyPages(bytes.NewReader(data), l) != nil {
			return
		}
		file, err := os.CreateTemp(dir, "fuzz-*.db")
		if err != nil {
			t.Fatal(err)
		}
		defer os.Remove(file.Name())
		_, err = file.Write(data)
		if cerr := file.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		if errs := bboltCheck(t, file.Name()); len(errs) > 0 {
			t.Fatalf("the walk passed a file bbolt's check does not: %v", errs)
		}
	})
}
