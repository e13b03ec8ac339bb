package longpoll_test

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/memory"
)

// wakeBench returns a server over a memory store and the head cursor of
// topic w, where the wake-up benchmarks poll.
func wakeBench(b *testing.B, opts ...longpoll.Option) (*longpoll.Server, struct{ Cursor string }) {
	br := memory.New(memory.WithMaxMessages(10))
	b.Cleanup(func() { br.Close() })
	srv, _ := longpoll.New(br, opts...)
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/poll?topic=w&timeout=0", nil))
	var first struct{ Cursor string }
	if err := json.Unmarshal(rec.Body.Bytes(), &first); err != nil || first.Cursor == "" {
		b.Fatalf("first poll: %s", rec.Body)
	}
	return srv, first
}

// BenchmarkPublishWake measures the hot path end to end inside the
// process: one publish waking n held polls, each writing its reply and
// registering again. One op is one publish delivered to all n.
func BenchmarkPublishWake(b *testing.B) {
	for _, n := range []int{1, 1000, 10000} {
		b.Run(fmt.Sprintf("waiters=%d", n), func(b *testing.B) {
			srv, first := wakeBench(b)

			stop := make(chan struct{})
			delivered := make(chan struct{}, n)
			var wg sync.WaitGroup
			for range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					cur := first.Cursor
					for {
						rec := httptest.NewRecorder()
						srv.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/poll?topic=w&timeout=50&cursor="+cur, nil))
						var r struct{ Cursor string }
						json.Unmarshal(rec.Body.Bytes(), &r)
						cur = r.Cursor
						select {
						case delivered <- struct{}{}:
						case <-stop:
							return
						}
						select {
						case <-stop:
							return
						default:
						}
					}
				}()
			}
			data := json.RawMessage(`{"n":1}`)
			b.ReportAllocs()
			for b.Loop() {
				for srv.Waiting("w") != n {
					runtime.Gosched()
				}
				if _, err := srv.Publish(b.Context(), longpoll.Publication{Topic: "w", Data: data}); err != nil {
					b.Fatal(err)
				}
				for range n {
					<-delivered
				}
			}
			b.StopTimer()
			close(stop)
			srv.Shutdown(b.Context())
			wg.Wait()
		})
	}
}

// BenchmarkPollImmediate measures a poll answered at once from the log:
// parse, register, read, encode.
func BenchmarkPollImmediate(b *testing.B) {
	br := memory.New()
	defer br.Close()
	srv, _ := longpoll.New(br)
	for i := range 10 {
		srv.Publish(b.Context(), longpoll.Publication{Topic: "p", Data: json.RawMessage(fmt.Sprint(i))})
	}
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/poll?topic=p&since=earliest&timeout=5", nil))
		if rec.Code != 200 {
			b.Fatal(rec.Code)
		}
	}
}

// countSink counts parked polls' replies and keeps the last body.
type countSink struct {
	done chan []byte
}

func (s *countSink) Finish(head, body []byte, _ time.Time) { s.done <- append([]byte(nil), body...) }

// BenchmarkParkedPublishWake is BenchmarkPublishWake on the parked path
// of the dense transport: one publish answers n parked polls, which then
// park again from their new cursors. One op is one publish delivered to
// all n plus their n re-polls.
func BenchmarkParkedPublishWake(b *testing.B) {
	for _, n := range []int{1, 1000, 10000} {
		b.Run(fmt.Sprintf("waiters=%d", n), func(b *testing.B) { parkedPublishWake(b, n) })
	}
}

// parkedPublishWake runs one BenchmarkParkedPublishWake case: n parked
// polls on a server made with opts.
func parkedPublishWake(b *testing.B, n int, opts ...longpoll.Option) {
	srv, r := wakeBench(b, opts...)
	sink := &countSink{done: make(chan []byte, n)}
	repoll := func(cur string) {
		for range n {
			if p := srv.Transport().ServePoll(httptest.NewRecorder(), httptest.NewRequest("GET", "/v1/poll?topic=w&timeout=50&cursor="+cur, nil), sink); p == nil {
				b.Fatal("not parked")
			}
		}
	}
	repoll(r.Cursor)
	data := json.RawMessage(`{"n":1}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := srv.Publish(b.Context(), longpoll.Publication{Topic: "w", Data: data}); err != nil {
			b.Fatal(err)
		}
		var body []byte
		for range n {
			body = <-sink.done
		}
		json.Unmarshal(body, &r)
		repoll(r.Cursor)
	}
	b.StopTimer()
	srv.Shutdown(b.Context())
	for range n {
		<-sink.done
	}
}

// BenchmarkPublish measures one publish through the handler: parse,
// validate, append, reply.
func BenchmarkPublish(b *testing.B) {
	br := memory.New()
	defer br.Close()
	srv, _ := longpoll.New(br)
	body := `{"topic":"p","data":{"n":1,"text":"hello"}}`
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/v1/publish", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		srv.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatal(rec.Code, rec.Body)
		}
	}
}
