package prommetrics_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/memory"
	"github.com/longpoll/longpoll/prommetrics"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// series gathers reg into a map from each series (name and labels, as
// name{k=v,...} with labels sorted) to its value: a counter's or gauge's
// value, a histogram's sample count.
func series(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			key := mf.GetName()
			if len(m.Label) > 0 {
				var ls []string
				for _, l := range m.Label {
					ls = append(ls, l.GetName()+"="+l.GetValue())
				}
				key += "{" + strings.Join(ls, ",") + "}"
			}
			out[key] = value(mf.GetType(), m)
		}
	}
	return out
}

func value(t dto.MetricType, m *dto.Metric) float64 {
	switch t {
	case dto.MetricType_COUNTER:
		return m.Counter.GetValue()
	case dto.MetricType_GAUGE:
		return m.Gauge.GetValue()
	case dto.MetricType_HISTOGRAM:
		return float64(m.Histogram.GetSampleCount())
	}
	return -1
}

// wantZero lists every series of the new families that a fresh server
// exports at zero (build info and the gauges of state aside).
func wantZero() []string {
	var w []string
	for r := range longpoll.NumRoutes {
		route := longpoll.Route(r).String()
		for _, c := range []string{"2xx", "3xx", "4xx", "5xx"} {
			w = append(w, "longpoll_http_requests_total{code="+c+",route="+route+"}")
		}
		if longpoll.Route(r) != longpoll.RoutePoll && longpoll.Route(r) != longpoll.RouteStream {
			w = append(w, "longpoll_http_request_duration_seconds{route="+route+"}")
		}
	}
	for _, r := range []string{"rate_limited", "overloaded", "store_full", "broker_unavailable", "unauthorized", "forbidden", "token_revoked", "draining"} {
		w = append(w, "longpoll_refusals_total{reason="+r+"}")
	}
	for _, r := range []string{"ok", "invalid", "expired", "revoked", "error"} {
		w = append(w, "longpoll_token_verifications_total{result="+r+"}")
	}
	for _, a := range []string{"topics", "topic_delete", "disconnect", "node", "drain", "undrain"} {
		w = append(w, "longpoll_admin_actions_total{action="+a+"}")
	}
	return append(w, "longpoll_publish_duration_seconds", "longpoll_response_bytes_total",
		"longpoll_topics_waited", "longpoll_draining",
		"longpoll_connections_open{transport=dense}", "longpoll_connections_open{transport=std}",
		// the series that were there before
		"longpoll_polls_held", "longpoll_polls_total{outcome=messages}", "longpoll_published_messages_total",
		"longpoll_delivered_messages_total", "longpoll_poll_hold_seconds", "longpoll_delivery_latency_seconds",
		"longpoll_gaps_total{reason=expired}", "longpoll_broker_errors_total{op=append}")
}

// TestFreshServerExportsEveryFamily: a server that has served nothing
// exports every family with every known label value, at zero; it is
// ready, not draining, and names its build.
func TestFreshServerExportsEveryFamily(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := memory.New()
	defer b.Close()
	srv, err := longpoll.New(b, longpoll.WithMetrics(prommetrics.New(reg)))
	if err != nil {
		t.Fatal(err)
	}
	prommetrics.RegisterServer(reg, srv)
	prommetrics.RegisterConnections(reg, nil, nil)
	prommetrics.RegisterBuildInfo(reg, "v9.9.9", "0123456789abcdef0123456789abcdef01234567")
	got := series(t, reg)
	for _, name := range wantZero() {
		if v, ok := got[name]; !ok || v != 0 {
			t.Errorf("%s = %v, %v; want 0", name, v, ok)
		}
	}
	if v := got["longpoll_ready"]; v != 1 {
		t.Errorf("longpoll_ready = %v", v)
	}
	found := false
	for k, v := range got {
		if strings.HasPrefix(k, "longpoll_build_info{") {
			found = true
			if v != 1 || !strings.Contains(k, "go="+runtime.Version()) || !strings.Contains(k, "version=v9.9.9") || !strings.Contains(k, "commit=0123456789abcdef0123456789abcdef01234567") {
				t.Errorf("%s = %v", k, v)
			}
		}
	}
	if !found {
		t.Error("no longpoll_build_info")
	}
	srv.Shutdown(t.Context())
	got = series(t, reg)
	if got["longpoll_ready"] != 0 || got["longpoll_draining"] != 1 {
		t.Errorf("after Shutdown: ready %v, draining %v", got["longpoll_ready"], got["longpoll_draining"])
	}
}

// TestAbilitiesCount: each ability moves its own series, and a value out
// of range is not a panic.
func TestAbilitiesCount(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := prommetrics.New(reg)
	m.RequestServed(longpoll.RoutePublish, 200, 10, time.Millisecond)
	m.RequestServed(longpoll.RoutePoll, 200, 5, 0)
	m.RequestServed(longpoll.RouteOther, 404, 3, time.Millisecond)
	m.RequestServed(longpoll.RouteTopic, 503, 0, time.Millisecond)
	m.RequestServed(longpoll.RouteHealth, 307, 0, time.Millisecond)
	m.RequestServed(longpoll.Route(200), 200, 0, 0) // out of range: other
	m.PublishAcked(time.Millisecond)
	m.Refused(longpoll.RefusalOverloaded)
	m.Refused(longpoll.Refusal(200))
	m.TokenVerified(longpoll.TokenExpired)
	m.TokenVerified(longpoll.TokenResult(200))
	m.AdminAction("drain")
	m.AdminAction("nonsense")
	got := series(t, reg)
	want := map[string]float64{
		"longpoll_http_requests_total{code=2xx,route=publish}":  1,
		"longpoll_http_requests_total{code=2xx,route=poll}":     1,
		"longpoll_http_requests_total{code=4xx,route=other}":    1,
		"longpoll_http_requests_total{code=5xx,route=topic}":    1,
		"longpoll_http_requests_total{code=3xx,route=health}":   1,
		"longpoll_http_requests_total{code=2xx,route=other}":    1,
		"longpoll_http_request_duration_seconds{route=publish}": 1,
		"longpoll_http_request_duration_seconds{route=other}":   2,
		"longpoll_response_bytes_total":                         18,
		"longpoll_publish_duration_seconds":                     1,
		"longpoll_refusals_total{reason=overloaded}":            1,
		"longpoll_refusals_total{reason=rate_limited}":          0,
		"longpoll_token_verifications_total{result=expired}":    1,
		"longpoll_admin_actions_total{action=drain}":            1,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if _, ok := got["longpoll_http_request_duration_seconds{route=poll}"]; ok {
		t.Error("polls have a duration series")
	}
}

// TestHandlerAndPass: a wrapped handler's requests count under its
// route, except those it hands on through Pass, which count once, where
// the next handler counts them.
func TestHandlerAndPass(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := prommetrics.New(reg)
	inner := m.Handler(longpoll.RouteOther, http.NotFoundHandler())
	next := prommetrics.Pass(inner)
	h := m.Handler(longpoll.RouteStatic, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/page" {
			w.Write([]byte("hello"))
			return
		}
		next.ServeHTTP(w, r)
	}))
	ts := httptest.NewServer(h)
	defer ts.Close()
	for _, p := range []string{"/page", "/elsewhere"} {
		resp, err := http.Get(ts.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	got := series(t, reg)
	for k, v := range map[string]float64{
		"longpoll_http_requests_total{code=2xx,route=static}": 1,
		"longpoll_http_requests_total{code=4xx,route=static}": 0,
		"longpoll_http_requests_total{code=4xx,route=other}":  1,
	} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

// TestDeliveryLatencyHelpNamesClockSkew: the latency is measured from
// the message's time, set by whichever node appended it.
func TestDeliveryLatencyHelpNamesClockSkew(t *testing.T) {
	reg := prometheus.NewRegistry()
	prommetrics.New(reg)
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "longpoll_delivery_latency_seconds" && !strings.Contains(mf.GetHelp(), "clock skew") {
			t.Errorf("help: %q", mf.GetHelp())
		}
	}
}

type pingFails struct{ longpoll.Broker }

func (pingFails) Ping(context.Context) error { return errors.New("down") }

// TestReadyMirrorsReadyz: a broker that does not answer its ping makes
// both /readyz 503 and longpoll_ready 0.
func TestReadyMirrorsReadyz(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := memory.New()
	defer b.Close()
	srv, err := longpoll.New(pingFails{b}, longpoll.WithMetrics(prommetrics.New(reg)))
	if err != nil {
		t.Fatal(err)
	}
	prommetrics.RegisterServer(reg, srv)
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 503 {
		t.Fatalf("/readyz %d", rec.Code)
	}
	if v := series(t, reg)["longpoll_ready"]; v != 0 {
		t.Errorf("longpoll_ready = %v", v)
	}
	n := 0
	for k := range series(t, reg) {
		if strings.HasPrefix(k, "longpoll_http_requests_total{") {
			n++
		}
	}
	if n != int(longpoll.NumRoutes)*4 {
		t.Errorf("%d request series", n)
	}
	if v := series(t, reg)["longpoll_http_requests_total{code=5xx,route=health}"]; v != 1 {
		t.Errorf("5xx health = %v", v)
	}
}
