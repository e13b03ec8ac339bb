package bench

import (
	"bytes"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWriteSVG(t *testing.T) {
	var a, b Histogram
	for i := 1; i <= 1000; i++ {
		a.Record(time.Duration(i) * 100 * time.Microsecond) // 0.1 to 100 ms
		b.Record(time.Duration(i) * time.Millisecond)
	}
	var buf bytes.Buffer
	if err := WriteSVG(&buf, `fanout <10000> & "more"`, []Series{{"longpoll", &a}, {"nchan", &b}, {"empty", &Histogram{}}}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()

	// Well-formed XML whose root is an svg element.
	dec := xml.NewDecoder(strings.NewReader(out))
	var root string
	polylines := 0
	var texts []string
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, out)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = e.Name.Local
			}
			if e.Name.Local == "polyline" {
				polylines++
				for _, at := range e.Attr {
					if at.Name.Local == "points" && len(strings.Fields(at.Value)) < 10 {
						t.Errorf("a polyline with few points: %q", at.Value)
					}
				}
			}
		case xml.CharData:
			if s := strings.TrimSpace(string(e)); s != "" {
				texts = append(texts, s)
			}
		}
	}
	if root != "svg" {
		t.Fatalf("root element %q", root)
	}
	if polylines != 2 {
		t.Errorf("%d curves, want 2 (the empty series is not drawn)", polylines)
	}
	all := strings.Join(texts, "|")
	for _, want := range []string{`fanout <10000> & "more"`, "longpoll", "nchan", "empty (no data)", "p50 50.1ms", "p90 89.7ms", "p99 99.1ms", "100µs", "1s"} {
		if !strings.Contains(all, want) {
			t.Errorf("chart lacks text %q; has %s", want, all)
		}
	}
}

func TestWriteSVGNoData(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteSVG(&buf, "nothing", nil); err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(buf.Bytes(), new(struct{})); err != nil {
		t.Fatalf("not XML: %v", err)
	}
	if strings.Contains(buf.String(), "NaN") || strings.Contains(buf.String(), "Inf") {
		t.Fatalf("bad numbers in %s", buf.String())
	}
}

func TestSVGFileComparesRuns(t *testing.T) {
	dir := t.TempDir()
	mk := func(protocol string, base time.Duration) *Result {
		h := &Histogram{}
		for i := 1; i <= 100; i++ {
			h.Record(base * time.Duration(i))
		}
		return &Result{Scenario: Fanout, Protocol: protocol, Subscribers: 100, Topics: 1, Histogram: h, Latency: h.Summarize()}
	}
	earlier := filepath.Join(dir, "nchan.json")
	if err := WriteJSONFile(earlier, mk("nchan", time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	back, err := ReadJSONFile(earlier)
	if err != nil {
		t.Fatal(err)
	}
	if back.Histogram.Count() != 100 || back.Latency.Max != 100 {
		t.Fatalf("read back %d values, max %g ms", back.Histogram.Count(), back.Latency.Max)
	}
	svg := filepath.Join(dir, "chart.svg")
	if err := WriteSVGFile(svg, mk("longpoll", 2*time.Millisecond), back); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "<polyline"); n != 2 {
		t.Fatalf("%d curves, want 2", n)
	}
	for _, want := range []string{">longpoll<", ">nchan (", "fanout: 100 subscribers"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("chart lacks %q", want)
		}
	}
	if _, err := ReadJSONFile(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("ReadJSONFile of a missing file: no error")
	}
}
