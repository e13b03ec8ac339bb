package bench

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
	"time"
)

// Series is one named latency distribution on a chart.
type Series struct {
	Name string
	Hist *Histogram
}

var seriesColors = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"}

// Chart geometry, in SVG user units.
const (
	chartW, chartH         = 720, 420
	padL, padR, padT, padB = 70, 20, 40, 70
	plotW, plotH           = chartW - padL - padR, chartH - padT - padB
)

// WriteSVG draws the cumulative distribution of each series' latencies:
// latency on a logarithmic x axis, the share of deliveries received within
// it on the y axis, with dashed markers at p50, p90 and p99 of the first
// series. Empty series are listed in the legend and not drawn.
func WriteSVG(w io.Writer, title string, series []Series) error {
	var b strings.Builder
	lo, hi := time.Duration(math.MaxInt64), time.Duration(0)
	for _, s := range series {
		if s.Hist == nil || s.Hist.Count() == 0 {
			continue
		}
		lo = min(lo, max(s.Hist.Min(), time.Microsecond))
		hi = max(hi, s.Hist.Max())
	}
	if hi == 0 { // nothing recorded
		lo, hi = time.Millisecond, 10*time.Millisecond
	}
	// Whole decades around the data.
	loExp := math.Floor(math.Log10(float64(lo)))
	hiExp := math.Ceil(math.Log10(float64(hi)))
	if hiExp <= loExp {
		hiExp = loExp + 1
	}
	x := func(d time.Duration) float64 {
		v := math.Log10(math.Max(float64(d), math.Pow(10, loExp)))
		return padL + (v-loExp)/(hiExp-loExp)*plotW
	}
	y := func(f float64) float64 { return padT + (1-f)*plotH }

	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", chartW, chartH, chartW, chartH)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", chartW, chartH)
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="15" font-weight="bold">%s</text>`+"\n", padL, html.EscapeString(title))
	// Grid and axes.
	for f := 0.0; f <= 1.0001; f += 0.1 {
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`, padL, y(f), padL+plotW, y(f))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%.0f%%</text>`+"\n", padL-6, y(f)+4, f*100)
	}
	for e := loExp; e <= hiExp; e++ {
		d := time.Duration(math.Pow(10, e))
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`, x(d), padT, x(d), padT+plotH)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x(d), padT+plotH+16, html.EscapeString(d.String()))
		if e < hiExp {
			for k := 2; k <= 9; k++ {
				xd := time.Duration(float64(k) * math.Pow(10, e))
				fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#f0f0f0"/>`, x(xd), padT, x(xd), padT+plotH)
			}
			b.WriteString("\n")
		}
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#333"/>`+"\n", padL, padT, plotW, plotH)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">publish-to-receive latency (log scale)</text>`+"\n", padL+plotW/2, padT+plotH+36)
	fmt.Fprintf(&b, `<text transform="translate(16 %d) rotate(-90)" text-anchor="middle">deliveries received within it</text>`+"\n", padT+plotH/2)

	first := true
	for i, s := range series {
		color := seriesColors[i%len(seriesColors)]
		ly := padT + plotH + 56
		lx := padL + i*180
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>`, lx, ly-4, lx+20, ly-4, color)
		label := s.Name
		if s.Hist == nil || s.Hist.Count() == 0 {
			label += " (no data)"
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", lx+26, ly, html.EscapeString(label))
		if s.Hist == nil || s.Hist.Count() == 0 {
			continue
		}
		ds, fs := s.Hist.CDF()
		var pts strings.Builder
		// A step from 0 at the smallest value, then up the distribution.
		fmt.Fprintf(&pts, "%.1f,%.1f", x(s.Hist.Min()), y(0))
		prev := 0.0
		for k, d := range ds {
			fmt.Fprintf(&pts, " %.1f,%.1f %.1f,%.1f", x(d), y(prev), x(d), y(fs[k]))
			prev = fs[k]
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", color, pts.String())
		if first {
			first = false
			for _, p := range []float64{50, 90, 99} {
				d := s.Hist.Percentile(p)
				fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-dasharray="4 3"/>`, x(d), padT, x(d), padT+plotH, color)
				tx, anchor := x(d)+3, "start"
				if tx > padL+plotW-80 { // keep the label inside the plot
					tx, anchor = x(d)-3, "end"
				}
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="%s" text-anchor="%s">p%g %s</text>`+"\n", tx, y(p/100)+14, color, anchor, p, html.EscapeString(round(d).String()))
			}
		}
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// round keeps three significant digits of d for display.
func round(d time.Duration) time.Duration {
	switch {
	case d >= 100*time.Millisecond:
		return d.Round(time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	case d >= 100*time.Microsecond:
		return d.Round(time.Microsecond)
	}
	return d.Round(100 * time.Nanosecond)
}
