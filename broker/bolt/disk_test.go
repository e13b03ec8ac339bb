package bolt

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/longpoll/longpoll"
	bbolt "go.etcd.io/bbolt"
)

// sizes returns the database's size as bbolt uses it (its high-water
// mark: the pages it ever allocated) and the file's size.
func sizes(t testing.TB, b *Broker) (used, file int64) {
	t.Helper()
	if err := b.db.View(func(tx *bbolt.Tx) error {
		used = tx.Size()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(b.Path())
	if err != nil {
		t.Fatal(err)
	}
	return used, fi.Size()
}

// A steady stream far past retention does not grow the file: the pages of
// dropped messages are reused.
func TestDiskBounded(t *testing.T) {
	b := openTest(t, WithMaxMessages(100))
	const total, batch = 20000, 25
	data := `"` + strings.Repeat("x", 1022) + `"` // 1 KiB

	// A reader follows the stream, as a poller would, holding read
	// transactions that delay the reuse of pages.
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	woken := make(chan struct{}, 1)
	stop := b.Watch("stream", func(string) {
		select {
		case woken <- struct{}{}:
		default:
		}
	})
	defer stop()
	wg.Go(func() {
		var pos longpoll.Position
		for {
			select {
			case <-ctx.Done():
				return
			case <-woken:
			}
			p, err := b.Read(ctx, "stream", pos, 100)
			if err != nil {
				return
			}
			pos = p.Next
		}
	})

	var usedAt, fileAt [3]int64
	for i := 0; i < total; i += batch {
		pubs := make([]longpoll.Publication, batch)
		for j := range pubs {
			pubs[j] = pub("stream", data)
		}
		mustAppend(t, b, pubs...)
		switch i + batch {
		case total / 4:
			usedAt[0], fileAt[0] = sizes(t, b)
		case total / 2:
			usedAt[1], fileAt[1] = sizes(t, b)
		case total:
			usedAt[2], fileAt[2] = sizes(t, b)
		}
	}
	t.Logf("used %v bytes, file %v bytes after %d, %d and %d messages", usedAt, fileAt, total/4, total/2, total)

	const written = total * 1024
	if usedAt[2] > written/10 {
		t.Errorf("%d bytes used after writing %d: pages are not reused", usedAt[2], written)
	}
	// After the first half, the second one adds next to nothing: a few
	// pages that a reader kept from reuse at some point, not the 10 MiB
	// it wrote.
	if grew := usedAt[2] - usedAt[1]; grew > written/2/10 {
		t.Errorf("used size grew by %d bytes (from %d) over the second %d messages", grew, usedAt[1], total/2)
	}
	if fileAt[2] != fileAt[1] {
		t.Errorf("file grew from %d to %d bytes over the second %d messages", fileAt[1], fileAt[2], total/2)
	}
	if st := mustStat(t, b, "stream"); st.Head != total || st.Oldest != total-99 {
		t.Fatalf("Stat = %+v", st)
	}
}
