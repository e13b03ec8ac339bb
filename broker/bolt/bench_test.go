package bolt

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longpoll/longpoll"
	bbolt "go.etcd.io/bbolt"
)

// BenchmarkAppend measures durable appends of one small message each, by
// 1, 16 and 256 concurrent publishers over 16 topics: what group commit
// gains as the publishers share fsyncs. Compare with the memory broker's
// BenchmarkAppend.
func BenchmarkAppend(b *testing.B) {
	data := json.RawMessage(`{"user":"u-12345","event":"click","target":"#buy","at":"2030-01-02T03:04:05Z"}`)
	for _, publishers := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("publishers=%d", publishers), func(b *testing.B) {
			br := openTest(b)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ReportAllocs()
			b.ResetTimer()
			for p := range publishers {
				wg.Go(func() {
					pubs := []longpoll.Publication{{Topic: fmt.Sprint("bench-", p%16), Data: data}}
					for next.Add(1) <= int64(b.N) {
						if _, err := br.Append(b.Context(), pubs); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "publishes/s")
			b.ReportMetric(float64(br.enqueued.Load())/float64(br.commits.Load()), "appends/commit")
		})
	}
}

// BenchmarkRead measures reading a page of 100 messages of 100 bytes.
func BenchmarkRead(b *testing.B) {
	br := openTest(b)
	data := json.RawMessage(`{"user":"u-12345","event":"click","target":"#buy","at":"2030-01-02T03:04:05Z"}`)
	pubs := make([]longpoll.Publication, 1000)
	for i := range pubs {
		pubs[i] = longpoll.Publication{Topic: "read", Data: data}
	}
	if _, err := br.Append(b.Context(), pubs); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		p, err := br.Read(b.Context(), "read", longpoll.Position{}, 100)
		if err != nil || len(p.Messages) != 100 {
			b.Fatal(p, err)
		}
	}
}

// TestOpenCost measures what Open costs on a store of
// LONGPOLL_MEASURE_OPEN_MB MiB of 1 KiB messages over 1000 topics: the
// walk of every page it always makes, bbolt's full check that it adds
// after a stop that was not clean, and the whole Open either way. It is
// skipped unless that variable is set; docs/operations.md quotes it.
func TestOpenCost(t *testing.T) {
	mb, _ := strconv.Atoi(os.Getenv("LONGPOLL_MEASURE_OPEN_MB"))
	if mb <= 0 {
		t.Skip("set LONGPOLL_MEASURE_OPEN_MB to measure")
	}
	dir := t.TempDir()
	br, err := Open(dir, WithMaxMessages(1<<30), WithMaxBytes(1<<40), WithMaxAge(1000*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	data := json.RawMessage(`"` + strings.Repeat("x", 1022) + `"`)
	pubs := make([]longpoll.Publication, 4096)
	for i := 0; i < mb*1024; i += len(pubs) {
		for j := range pubs {
			pubs[j] = longpoll.Publication{Topic: fmt.Sprint("t", (i+j)%1000), Data: data}
		}
		if _, err := br.Append(t.Context(), pubs); err != nil {
			t.Fatal(err)
		}
	}
	path := br.Path()
	if err := br.Close(); err != nil {
		t.Fatal(err)
	}
	l, err := fileLayout(path)
	if err != nil {
		t.Fatal(err)
	}
	size := float64(l.hwm*l.pageSize) / (1 << 20)
	timed := func(what string, fn func() error) time.Duration {
		start := time.Now()
		if err := fn(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		d := time.Since(start)
		t.Logf("%-32s %8.3fs for %.0f MiB: %.2fs per GiB", what, d.Seconds(), size, d.Seconds()*1024/size)
		return d
	}
	// The file is in the page cache from the writes: these are warm.
	timed("walk of every page", func() error { return verifyFile(path, l) })
	timed("bbolt's full check", func() error {
		db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
		if err != nil {
			return err
		}
		defer db.Close()
		return fullCheck(db, path)
	})
	timed("Open after a clean stop", func() error {
		b, err := Open(dir)
		if err != nil {
			return err
		}
		return b.Close()
	})
	timed("Open after an unclean stop", func() error {
		db, err := bbolt.Open(path, 0o600, nil)
		if err != nil {
			return err
		}
		err = db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyClean) })
		if cerr := db.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		b, err := Open(dir)
		if err != nil {
			return err
		}
		return b.Close()
	})
}

// BenchmarkTopics measures listing a page of 100 topics that hold the
// default 1000 messages each, the most retention keeps by default: the
// data sizes are summed a cursor step per retained message.
func BenchmarkTopics(b *testing.B) {
	br := openTest(b)
	data := json.RawMessage(`{"user":"u-12345","event":"click","target":"#buy","at":"2030-01-02T03:04:05Z"}`)
	pubs := make([]longpoll.Publication, DefaultMaxMessages)
	for t := range 100 {
		for i := range pubs {
			pubs[i] = longpoll.Publication{Topic: fmt.Sprintf("topic-%03d", t), Data: data}
		}
		if _, err := br.Append(b.Context(), pubs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		ts, err := br.Topics(b.Context(), "", "", 100)
		if err != nil || len(ts) != 100 || ts[99].Retained != DefaultMaxMessages {
			b.Fatalf("Topics = %d topics, %v", len(ts), err)
		}
	}
}
