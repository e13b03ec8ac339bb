package deploy

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

// series are what a server exports: for each series name (a family, or a
// histogram's _bucket, _sum and _count), its labels and their values.
type series map[string]map[string]map[string]bool

var (
	sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+$`)
	labelPair  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

func parseMetrics(t *testing.T, text string) series {
	t.Helper()
	out := series{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := sampleLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("/metrics: a line not in the text format: %q", line)
		}
		labels := out[m[1]]
		if labels == nil {
			labels = map[string]map[string]bool{}
			out[m[1]] = labels
		}
		for _, kv := range labelPair.FindAllStringSubmatch(m[2], -1) {
			if labels[kv[1]] == nil {
				labels[kv[1]] = map[string]bool{}
			}
			labels[kv[1]][kv[2]] = true
		}
	}
	return out
}

// freshSeries starts longpoll serve with the memory store and no traffic
// and returns what its /metrics exports.
func freshSeries(t *testing.T) series {
	t.Helper()
	srv := startServer(t, nil, false, "serve", "--store", "memory", "--addr", "127.0.0.1:0")
	code, body := get(t, srv.url+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	return parseMetrics(t, body)
}

type grafanaTarget struct {
	Expr string `json:"expr"`
}

type grafanaPanel struct {
	Type    string          `json:"type"`
	Title   string          `json:"title"`
	Targets []grafanaTarget `json:"targets"`
	Panels  []grafanaPanel  `json:"panels"`
}

type dashboard struct {
	UID        string         `json:"uid"`
	Title      string         `json:"title"`
	Panels     []grafanaPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Label string `json:"label"`
			Type  string `json:"type"`
		} `json:"list"`
	} `json:"templating"`
}

var (
	metricName = regexp.MustCompile(`\blongpoll_[a-zA-Z0-9_]*`)
	// A series selector: a name and its matchers.
	selector = regexp.MustCompile(`\b(longpoll_[a-zA-Z0-9_]*)(\{[^}]*\})?`)
	matcher  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
	byClause = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
)

// TestGrafanaDashboard checks deploy/grafana/longpoll.json against the
// series a freshly started server exports: every longpoll_ name in the
// file, every label value a query matches, every label it groups by.
func TestGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile("grafana/longpoll.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("grafana/longpoll.json: %v", err)
	}
	have := freshSeries(t)

	// Every longpoll_ name in the file, wherever it is, is exported.
	for _, name := range metricName.FindAllString(string(data), -1) {
		if have[name] == nil {
			t.Errorf("%s: not a series that a fresh server exports", name)
		}
	}
	// No name of the dashboard's own takes the metrics' prefix.
	if d.UID == "" || d.Title == "" {
		t.Error("the dashboard wants a uid and a title")
	}
	names := []string{d.UID, d.Title}
	hasInstance := false
	for _, v := range d.Templating.List {
		names = append(names, v.Name, v.Label)
		hasInstance = hasInstance || v.Name == "instance"
	}
	var exprs []string
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			names = append(names, p.Title)
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				exprs = append(exprs, tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, n := range names {
		if strings.HasPrefix(n, "longpoll_") {
			t.Errorf("%q: the prefix longpoll_ is the metrics'", n)
		}
	}
	if !hasInstance {
		t.Error("no variable instance: the dashboard shows each node by its instance label")
	}

	// Each query: every selector filtered by the instance variable, its
	// matchers on label values the series takes, its groupings on labels
	// it has.
	used := map[string]bool{}
	for _, e := range exprs {
		labels := map[string]bool{"instance": true, "le": true}
		for _, m := range selector.FindAllStringSubmatch(e, -1) {
			name := m[1]
			used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")] = true
			if !strings.Contains(m[2], `instance=~"$instance"`) {
				t.Errorf("%q: %s without the matcher instance=~\"$instance\"", e, name)
			}
			for l := range have[name] {
				labels[l] = true
			}
			for _, mm := range matcher.FindAllStringSubmatch(m[2], -1) {
				label, op, value := mm[1], mm[2], mm[3]
				if label == "instance" {
					continue
				}
				if have[name] != nil && have[name][label] == nil {
					t.Errorf("%q: %s has no label %s", e, name, label)
					continue
				}
				if op != "=" && op != "=~" {
					continue
				}
				for _, v := range strings.Split(value, "|") {
					if have[name] != nil && !have[name][label][v] {
						t.Errorf("%q: %s{%s} never takes the value %q", e, name, label, v)
					}
				}
			}
		}
		for _, m := range byClause.FindAllStringSubmatch(e, -1) {
			for _, l := range strings.Split(m[1], ",") {
				if l = strings.TrimSpace(l); l != "" && !labels[l] {
					t.Errorf("%q: grouped by %s, a label of none of its series", e, l)
				}
			}
		}
	}
	// What the dashboard is for.
	for _, family := range []string{
		"longpoll_polls_held", "longpoll_published_messages_total", "longpoll_delivered_messages_total",
		"longpoll_publish_duration_seconds", "longpoll_delivery_latency_seconds", "longpoll_refusals_total",
		"longpoll_broker_errors_total", "longpoll_ready", "longpoll_draining",
	} {
		if !used[family] {
			t.Errorf("no panel shows %s", family)
		}
	}
	t.Logf("%d queries over %d families", len(exprs), len(used))
}
