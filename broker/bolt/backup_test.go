package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/longpoll/longpoll"
)

// sameLogs checks that copy holds each topic of orig with the same epoch,
// and messages equal to orig's up to copy's head; exact requires equal
// heads too.
func sameLogs(t *testing.T, orig, copy *Broker, topics []string, exact bool) {
	t.Helper()
	for _, topic := range topics {
		so, sc := mustStat(t, orig, topic), mustStat(t, copy, topic)
		if sc.Epoch != so.Epoch || sc.Head > so.Head || (exact && sc != so) {
			t.Fatalf("%s: copy %+v, original %+v", topic, sc, so)
		}
		po := mustRead(t, orig, topic, longpoll.Position{}, 100000)
		pc := mustRead(t, copy, topic, longpoll.Position{}, 100000)
		if pc.Gap != nil || po.Gap != nil {
			t.Fatalf("%s: gaps %+v %+v", topic, pc.Gap, po.Gap)
		}
		if uint64(len(pc.Messages)) != sc.Head {
			t.Fatalf("%s: copy holds %d messages, head %d", topic, len(pc.Messages), sc.Head)
		}
		for i, m := range pc.Messages {
			o := po.Messages[i]
			if m.Seq != o.Seq || !m.Time.Equal(o.Time) || m.ID != o.ID || !bytes.Equal(m.Data, o.Data) {
				t.Fatalf("%s: copy has %+v, original %+v", topic, m, o)
			}
		}
	}
}

func TestBackupWhilePublishing(t *testing.T) {
	b := openTest(t)
	topics := []string{"t0", "t1", "t2", "t3"}
	for _, topic := range topics {
		mustAppend(t, b, pubID(topic, "first", `"before"`))
	}

	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	errs := make(chan error, len(topics))
	progress := make(chan struct{}, len(topics))
	for p, topic := range topics {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				_, err := b.Append(ctx, []longpoll.Publication{pubID(topic, fmt.Sprint("m", i), fmt.Sprintf(`{"p":%d,"i":%d}`, p, i))})
				if err != nil && ctx.Err() == nil {
					errs <- err
					return
				}
				if i == 20 {
					progress <- struct{}{}
				}
			}
		})
	}
	for range topics {
		<-progress
	}
	dst := filepath.Join(t.TempDir(), "copy", FileName)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		t.Fatal(err)
	}
	err := b.BackupFile(t.Context(), dst)
	cancel()
	wg.Wait()
	close(errs)
	if err != nil {
		t.Fatalf("BackupFile: %v", err)
	}
	for err := range errs {
		t.Fatalf("Append: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(dst), ".*tmp*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}

	c := openDir(t, filepath.Dir(dst))
	sameLogs(t, b, c, topics, false)
	// The copy is a store of its own: it goes on from where it was.
	head := mustStat(t, c, "t0").Head
	if r := mustAppend(t, c, pubID("t0", "first", "again"))[0]; !r.Duplicate || r.Seq != 1 {
		t.Fatalf("id in the copy: %+v, want duplicate of seq 1", r)
	}
	if r := mustAppend(t, c, pub("t0", "1"))[0]; r.Seq != head+1 || r.Epoch != mustStat(t, b, "t0").Epoch {
		t.Fatalf("append to the copy: %+v, want seq %d in the same epoch", r, head+1)
	}
}

func TestBackupQuiet(t *testing.T) {
	b := openTest(t, WithMaxMessages(5))
	topics := []string{"a", "b", "c"}
	for i, topic := range topics {
		appendN(t, b, topic, 1, 3+3*i)
	}
	var buf bytes.Buffer
	n, err := b.Backup(t.Context(), &buf)
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("Backup = %d, %v; wrote %d", n, err, buf.Len())
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	c := openDir(t, dir, WithMaxMessages(5))
	for _, topic := range topics {
		so, sc := mustStat(t, b, topic), mustStat(t, c, topic)
		if sc != so {
			t.Fatalf("%s: copy %+v, original %+v", topic, sc, so)
		}
	}
	if raw := inspect(t, c, "a"); raw.topicsCnt != 3 {
		t.Fatalf("copy counts %d topics", raw.topicsCnt)
	}
}

func TestBackupCancelled(t *testing.T) {
	b := openTest(t)
	appendN(t, b, "t", 1, 3)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := b.Backup(ctx, &bytes.Buffer{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Backup: %v, want context.Canceled", err)
	}

	// Cancelled half way, BackupFile leaves the old file in place and no
	// temporary file.
	dir := t.TempDir()
	dst := filepath.Join(dir, "backup.db")
	if err := os.WriteFile(dst, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	if _, err := b.Backup(ctx, cancelAfter{cancel, &bytes.Buffer{}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Backup cancelled while writing: %v, want context.Canceled", err)
	}
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	cancel()
	if err := b.BackupFile(ctx, dst); !errors.Is(err, context.Canceled) {
		t.Fatalf("BackupFile: %v, want context.Canceled", err)
	}
	entries, _ := os.ReadDir(dir)
	if got, _ := os.ReadFile(dst); string(got) != "old" || len(entries) != 1 {
		t.Fatalf("after a cancelled BackupFile: %q, %d files", got, len(entries))
	}
}

// cancelAfter cancels its context on the first write.
type cancelAfter struct {
	cancel context.CancelFunc
	w      *bytes.Buffer
}

func (c cancelAfter) Write(p []byte) (int, error) {
	c.cancel()
	return c.w.Write(p)
}
