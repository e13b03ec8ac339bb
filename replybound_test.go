package longpoll_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/memory"
)

// countingBroker is a memory broker that counts the messages its Reads
// return: what a disk store would copy.
type countingBroker struct {
	*memory.Broker
	read atomic.Int64
}

func (b *countingBroker) Read(ctx context.Context, topic string, from longpoll.Position, limit int) (longpoll.Page, error) {
	p, err := b.Broker.Read(ctx, topic, from, limit)
	b.read.Add(int64(len(p.Messages)))
	return p, err
}

// TestBoundedReplyReadsLittle: a poll of up to 1000 messages whose reply
// --max-reply-bytes cuts to a few reads about as many of the store, not
// 1000; one of 1000 small messages still gets them all, in order.
func TestBoundedReplyReadsLittle(t *testing.T) {
	mb := memory.New()
	b := &countingBroker{Broker: mb}
	srv, err := longpoll.New(b, longpoll.WithMaxReplyBytes(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mb.Close() })
	ctx := t.Context()
	big := json.RawMessage(`"` + strings.Repeat("b", 60<<10) + `"`)
	for range 300 {
		if _, err := srv.Publish(ctx, longpoll.Publication{Topic: "big", Data: big}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 1000 {
		if _, err := srv.Publish(ctx, longpoll.Publication{Topic: "small", Data: json.RawMessage(`{"i":` + strconv.Itoa(i) + `}`)}); err != nil {
			t.Fatal(err)
		}
	}
	url, stop := serveTest(t, srv)
	tr := &http.Transport{}
	t.Cleanup(func() { stop(); tr.CloseIdleConnections() })
	e := &env{t: t, srv: srv, url: url, hc: &http.Client{Transport: tr}}

	r := e.poll(q("topic", "big", "since", "earliest", "limit", "1000", "timeout", "0"))
	if n := len(r.Messages); n == 0 || n > 17 {
		t.Fatalf("%d messages in a reply bounded to 1 MiB", n)
	}
	if n := b.read.Load(); n > 100 {
		t.Errorf("the poll read %d messages of the store for a reply of %d", n, len(r.Messages))
	}

	b.read.Store(0)
	r = e.poll(q("topic", "small", "since", "earliest", "limit", "1000", "timeout", "0"))
	if len(r.Messages) != 1000 {
		t.Fatalf("%d small messages, want 1000", len(r.Messages))
	}
	for k, m := range r.Messages {
		if m.Seq != uint64(k+1) {
			t.Fatalf("message %d has seq %d", k, m.Seq)
		}
	}
	if n := b.read.Load(); n != 1000 {
		t.Errorf("the poll read %d messages of the store, want 1000", n)
	}
}
