package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrape returns the server's /metrics as a map from each series, as
// written (name{labels} with the labels sorted by name), to its value.
// Its connection is closed after it, so that it leaves none open.
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// waitSeries waits until series reads want on the server's /metrics.
func waitSeries(t *testing.T, base, series string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var got float64
	for time.Now().Before(deadline) {
		if got = scrape(t, base)[series]; got == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s = %v, want %v", series, got, want)
}

// idleSeries lists what a fresh idle server exports at zero: every new
// family with every known label value, and the old ones.
func idleSeries() []string {
	var w []string
	for _, r := range []string{"poll", "publish", "topic", "health", "metrics", "admin", "static", "stream", "other"} {
		for _, c := range []string{"2xx", "3xx", "4xx", "5xx"} {
			w = append(w, fmt.Sprintf(`longpoll_http_requests_total{code=%q,route=%q}`, c, r))
		}
		if r != "poll" && r != "stream" {
			w = append(w, fmt.Sprintf(`longpoll_http_request_duration_seconds_count{route=%q}`, r))
		}
	}
	for _, r := range []string{"rate_limited", "overloaded", "store_full", "broker_unavailable", "unauthorized", "forbidden", "token_revoked", "draining"} {
		w = append(w, fmt.Sprintf(`longpoll_refusals_total{reason=%q}`, r))
	}
	for _, r := range []string{"ok", "invalid", "expired", "revoked", "error"} {
		w = append(w, fmt.Sprintf(`longpoll_token_verifications_total{result=%q}`, r))
	}
	for _, a := range []string{"topics", "topic_delete", "disconnect", "node", "drain", "undrain"} {
		w = append(w, fmt.Sprintf(`longpoll_admin_actions_total{action=%q}`, a))
	}
	return append(w,
		"longpoll_publish_duration_seconds_count", "longpoll_response_bytes_total", "longpoll_topics_waited",
		"longpoll_draining", `longpoll_connections_open{transport="dense"}`,
		"longpoll_polls_held", `longpoll_polls_total{outcome="messages"}`, "longpoll_published_messages_total",
		"longpoll_delivered_messages_total", "longpoll_poll_hold_seconds_count", "longpoll_delivery_latency_seconds_count",
		`longpoll_gaps_total{reason="expired"}`, `longpoll_broker_errors_total{op="append"}`,
		"longpoll_reply_bytes_pending", "longpoll_reply_bytes_unread")
}

func transports() []string {
	if runtime.GOOS == "linux" {
		return []string{"dense", "std"}
	}
	return []string{"std"}
}

// TestMetricsOfAFreshServer: a fresh idle server, on either transport,
// exports every family at zero with every known label value, is ready,
// not draining, and names its build.
func TestMetricsOfAFreshServer(t *testing.T) {
	for _, tr := range transports() {
		t.Run(tr, func(t *testing.T) {
			s := startServer(t, nil, "--transport", tr, "--stats-interval", "0")
			got := scrape(t, s.url)
			for _, name := range idleSeries() {
				if v, ok := got[name]; !ok || v != 0 {
					t.Errorf("%s = %v (present %v), want 0", name, v, ok)
				}
			}
			// The scrape's own connection is open; under dense, net/http
			// serves it, handed over by the event loop.
			if v := got[`longpoll_connections_open{transport="std"}`]; v != 1 {
				t.Errorf("std connections: %v", v)
			}
			if got["longpoll_ready"] != 1 {
				t.Errorf("longpoll_ready = %v", got["longpoll_ready"])
			}
			want := `longpoll_build_info{commit=`
			found := false
			for k, v := range got {
				if strings.HasPrefix(k, want) {
					found = v == 1 && strings.Contains(k, `go="`+runtime.Version()+`"`) && strings.Contains(k, `version="`)
					if !found {
						t.Errorf("%s %v", k, v)
					}
				}
			}
			if !found {
				t.Error("no longpoll_build_info")
			}
		})
	}
}

// TestMetricsMove: on either transport, a 404 counts as 4xx on route
// other; an acknowledged publish as 2xx on route publish, with its time;
// a held poll shows in topics_waited until a publish answers it; a poll
// past --max-held-polls counts in refusals{reason="overloaded"}; an open
// connection counts in connections_open until it closes.
func TestMetricsMove(t *testing.T) {
	for _, tr := range transports() {
		t.Run(tr, func(t *testing.T) {
			s := startServer(t, nil, "--transport", tr, "--stats-interval", "0", "--max-held-polls", "1")
			for _, p := range []string{"/nope", "/v1/nope"} {
				resp, err := http.Get(s.url + p)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 404 {
					t.Fatalf("%s: %d", p, resp.StatusCode)
				}
			}
			got := scrape(t, s.url)
			for k, v := range map[string]float64{
				`longpoll_http_requests_total{code="4xx",route="other"}`:      2,
				`longpoll_http_requests_total{code="4xx",route="static"}`:     0,
				`longpoll_http_request_duration_seconds_count{route="other"}`: 2,
			} {
				if got[k] != v {
					t.Errorf("after two 404s: %s = %v, want %v", k, got[k], v)
				}
			}

			// A held poll: its topic is waited; a second poll is refused.
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			held := make(chan int, 1)
			go func() {
				req, _ := http.NewRequestWithContext(ctx, "GET", s.url+"/v1/poll?topic=m&timeout=15s", nil)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					held <- 0
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				held <- resp.StatusCode
			}()
			waitWaiting(t, s.url, "m", 1)
			waitSeries(t, s.url, "longpoll_topics_waited", 1)
			resp, err := http.Get(s.url + "/v1/poll?topic=other&timeout=5s")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 503 {
				t.Fatalf("poll past --max-held-polls: %d", resp.StatusCode)
			}
			mustPublish(t, s.url, `{"topic":"m","data":1}`)
			if st := <-held; st != 200 {
				t.Fatalf("held poll: %d", st)
			}
			waitSeries(t, s.url, "longpoll_topics_waited", 0)
			got = scrape(t, s.url)
			for k, v := range map[string]float64{
				`longpoll_refusals_total{reason="overloaded"}`:                  1,
				`longpoll_http_requests_total{code="5xx",route="poll"}`:         1,
				`longpoll_http_requests_total{code="2xx",route="poll"}`:         1,
				`longpoll_http_requests_total{code="2xx",route="publish"}`:      1,
				`longpoll_http_request_duration_seconds_count{route="publish"}`: 1,
				`longpoll_publish_duration_seconds_count`:                       1,
				`longpoll_http_requests_total{code="2xx",route="topic"}`:        got[`longpoll_http_requests_total{code="2xx",route="topic"}`],
				`longpoll_http_requests_total{code="2xx",route="metrics"}`:      got[`longpoll_http_requests_total{code="2xx",route="metrics"}`],
			} {
				if got[k] != v {
					t.Errorf("%s = %v, want %v", k, got[k], v)
				}
			}
			if got[`longpoll_http_requests_total{code="2xx",route="topic"}`] < 1 || got[`longpoll_http_requests_total{code="2xx",route="metrics"}`] < 1 {
				t.Error("topic or metrics requests not counted")
			}
			if got["longpoll_response_bytes_total"] <= 0 {
				t.Error("no response bytes counted")
			}

			// A connection that sends nothing stays where it was accepted.
			http.DefaultClient.CloseIdleConnections() // the test's own kept-alive ones
			series := fmt.Sprintf(`longpoll_connections_open{transport=%q}`, tr)
			base := 0.0
			if tr == "std" {
				base = 1 // the scrape's own
			}
			waitSeries(t, s.url, series, base)
			c, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			waitSeries(t, s.url, series, base+1)
			c.Close()
			waitSeries(t, s.url, series, base)
		})
	}
}
