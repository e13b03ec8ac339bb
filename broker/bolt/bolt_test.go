package bolt

import (
	"sync"
	"testing"
	"time"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/brokertest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// openTest opens a broker in a new directory and closes it at the end of
// the test.
func openTest(t testing.TB, opts ...Option) *Broker {
	t.Helper()
	return openDir(t, t.TempDir(), opts...)
}

func openDir(t testing.TB, dir string, opts ...Option) *Broker {
	t.Helper()
	b, err := Open(dir, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func TestConformance(t *testing.T) {
	brokertest.Run(t, func(t *testing.T) longpoll.Broker { return openTest(t) })
}

func TestConformanceRetention(t *testing.T) {
	brokertest.RunRetention(t, func(t *testing.T, n int) longpoll.Broker {
		return openTest(t, WithMaxMessages(n))
	})
}

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func TestConformanceAdmin(t *testing.T) {
	brokertest.RunAdmin(t, func(t *testing.T) longpoll.Broker { return openTest(t) })
}

func TestConformanceAdminRetention(t *testing.T) {
	brokertest.RunAdminRetention(t, func(t *testing.T, n int) longpoll.Broker {
		return openTest(t, WithMaxMessages(n))
	})
}
