package stats_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/memory"
	"github.com/longpoll/longpoll/internal/stats"
	"github.com/longpoll/longpoll/prommetrics"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// counted is a broker that can count its topics.
type counted struct{ *memory.Broker }

func (counted) Topics() int { return 7 }

type fixture struct {
	b   *memory.Broker
	srv *longpoll.Server
	reg *prometheus.Registry
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	b := memory.New()
	t.Cleanup(func() { b.Close() })
	reg := prometheus.NewRegistry()
	srv, err := longpoll.New(b, longpoll.WithMetrics(prommetrics.New(reg)))
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{b, srv, reg}
}

// snapshots returns what the topic holds.
func (f *fixture) snapshots(t *testing.T) []stats.Snapshot {
	t.Helper()
	page, err := f.b.Read(context.Background(), stats.Topic, longpoll.Position{}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]stats.Snapshot, len(page.Messages))
	for i, m := range page.Messages {
		if len(m.Data) > 1500 {
			t.Errorf("snapshot of %d bytes: %s", len(m.Data), m.Data)
		}
		if err := json.Unmarshal(m.Data, &out[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestPublishesSnapshots(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		p, err := stats.Start(f.srv, stats.Config{Gatherer: f.reg, Interval: 2 * time.Second, Node: "n1"})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		synctest.Wait()
		if got := f.snapshots(t); len(got) != 1 || got[0].Published != 0 {
			t.Fatalf("at start: %+v, want one snapshot with nothing published", got)
		}

		// Load: three messages published, then read by one poll.
		for i := range 3 {
			if _, err := f.srv.Publish(t.Context(), longpoll.Publication{Topic: "t", Data: json.RawMessage{'1' + byte(i)}}); err != nil {
				t.Fatal(err)
			}
		}
		rec := httptest.NewRecorder()
		f.srv.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/poll?topic=t&since=earliest&timeout=0", nil))
		if rec.Code != 200 {
			t.Fatalf("poll: %d %s", rec.Code, rec.Body)
		}

		time.Sleep(2 * time.Second)
		synctest.Wait()
		got := f.snapshots(t)
		if len(got) != 2 {
			t.Fatalf("after one interval: %d snapshots, want 2", len(got))
		}
		s := got[1]
		if s.V != 1 || s.Node != "n1" || s.IntervalMS != 2000 || s.Published != 3 || s.Delivered != 3 ||
			s.Polls["messages"] != 1 || s.Polls["timeout"] != 0 || s.Held != 0 || s.Topics != nil {
			t.Fatalf("snapshot %+v", s)
		}
		if _, ok := s.Gaps["expired"]; !ok {
			t.Fatalf("gaps %v: want every reason, zeros included", s.Gaps)
		}
		if _, ok := s.BrokerErrors["append"]; !ok {
			t.Fatalf("broker errors %v: want every op, zeros included", s.BrokerErrors)
		}
		if n, ok := s.Refusals["token_revoked"]; !ok || n != 0 || len(s.Refusals) != int(longpoll.NumRefusals) {
			t.Fatalf("refusals %v: want every reason at zero", s.Refusals)
		}
		dl, pl := s.DeliveryLatency, s.PublishLatency
		if dl == nil || pl == nil || len(dl.N) != len(dl.LE)+1 || len(dl.LE) == 0 || dl.N[len(dl.LE)] != 3 || pl.N[len(pl.LE)] != 0 {
			t.Fatalf("latencies %+v %+v: want the delivery histogram with the 3 messages, the publish one empty", dl, pl)
		}
		for i := 1; i < len(dl.N); i++ {
			if dl.N[i] < dl.N[i-1] {
				t.Fatalf("delivery histogram not cumulative: %v", dl.N)
			}
		}
		if d := s.Time.Sub(got[0].Time); d != 2*time.Second {
			t.Fatalf("snapshots %v apart, want 2s", d)
		}

		// Close stops it: no snapshot after, and a second Close is harmless.
		p.Close()
		p.Close()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if n := len(f.snapshots(t)); n != 2 {
			t.Fatalf("%d snapshots after Close, want 2", n)
		}
	})
}

func TestTopicCount(t *testing.T) {
	f := newFixture(t)
	s, err := stats.Take(f.reg, counted{f.b})
	if err != nil {
		t.Fatal(err)
	}
	if s.Topics == nil || *s.Topics != 7 {
		t.Fatalf("topics %v, want 7", s.Topics)
	}
	b, _ := json.Marshal(s)
	if !strings.Contains(string(b), `"topics":7`) {
		t.Fatalf("JSON %s", b)
	}
	// Without the ability, the field is left out.
	s, _ = stats.Take(f.reg, nil)
	if b, _ := json.Marshal(s); strings.Contains(string(b), "topics") {
		t.Fatalf("JSON %s has topics", b)
	}
}

func TestFailingPublishIsLoggedOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		f.b.Close() // every append now fails
		var logs bytes.Buffer
		p, err := stats.Start(f.srv, stats.Config{Gatherer: f.reg, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		p.Close()
		if n := strings.Count(logs.String(), "publishing stats"); n != 1 {
			t.Fatalf("%d warnings for one lasting failure, want 1:\n%s", n, &logs)
		}
	})
}

func TestStartRefuses(t *testing.T) {
	f := newFixture(t)
	for name, cfg := range map[string]stats.Config{
		"no gatherer":       {},
		"negative interval": {Gatherer: f.reg, Interval: -time.Second},
	} {
		if p, err := stats.Start(f.srv, cfg); err == nil {
			p.Close()
			t.Errorf("%s: started", name)
		}
	}
}
