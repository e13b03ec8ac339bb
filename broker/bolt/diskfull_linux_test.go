package bolt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/longpoll/longpoll"
)

// A real full disk: a 2 MiB tmpfs. Appends that find no room fail with
// ErrStoreFull (not ErrUnavailable), reads and Ping go on, and once room
// is made appends succeed again; nothing acknowledged is lost.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=2m"); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v): the disk-full test needs one", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, 512<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	dir := filepath.Join(mnt, "data")
	opts := []Option{WithClock(clock), WithMaxMessages(1_000_000), WithMaxBytes(1 << 30)}
	b, err := Open(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()

	data := `"` + strings.Repeat("d", 2000) + `"`
	acked := 0
	for {
		_, err = b.Append(t.Context(), []longpoll.Publication{pub("t", data)})
		if err != nil {
			break
		}
		if acked++; acked > 2000 {
			t.Fatal("2000 appends of 2 KB fit in a 2 MiB file system")
		}
	}
	if !errors.Is(err, longpoll.ErrStoreFull) || errors.Is(err, longpoll.ErrUnavailable) {
		t.Fatalf("append on a full disk: %v, want ErrStoreFull", err)
	}
	t.Logf("%d appends of 2 KB, then: %v", acked, err)
	if err := b.Ping(t.Context()); err != nil {
		t.Fatalf("Ping on a full disk: %v, want nil (readiness stays)", err)
	}
	if p := mustRead(t, b, "t", longpoll.Position{}, 10000); len(p.Messages) != acked {
		t.Fatalf("read %d messages, %d were acknowledged", len(p.Messages), acked)
	}
	// Until fullRetry has passed, appends are refused without a write.
	enqueued := b.enqueued.Load()
	if _, err := b.Append(t.Context(), []longpoll.Publication{pub("t", "1")}); !errors.Is(err, longpoll.ErrStoreFull) {
		t.Fatalf("append just after: %v, want ErrStoreFull", err)
	}
	if b.enqueued.Load() != enqueued {
		t.Fatal("the append just after a full disk was queued for a write")
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(fullRetry)
	mu.Unlock()
	for i := range 10 {
		if _, err := b.Append(t.Context(), []longpoll.Publication{pub("t", fmt.Sprint(i))}); err != nil {
			t.Fatalf("append %d once there is room: %v", i, err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b, err = Open(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if st := mustStat(t, b, "t"); st.Head != uint64(acked+10) || st.Oldest != 1 {
		t.Fatalf("after a restart: %+v, want %d messages", st, acked+10)
	}
}
