package bench

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress draws a one-line progress bar: redrawn in place four times a
// second on a terminal, a plain line every five seconds elsewhere (logs,
// CI). A nil *progress draws nothing.
type progress struct {
	w     io.Writer
	tty   bool
	start time.Time
	mu    sync.Mutex
	phase string
	frac  func() float64 // done share of the phase, 0..1; nil: unknown
	stats func() string
	stop  chan struct{}
	done  chan struct{}
	last  int // width of the last line drawn
	drawn time.Time
}

func newProgress(w io.Writer, stats func() string) *progress {
	if w == nil {
		return nil
	}
	p := &progress{w: w, start: time.Now(), stats: stats, stop: make(chan struct{}), done: make(chan struct{})}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	go p.loop()
	return p
}

// set starts a phase; frac, when not nil, tells how far along it is.
func (p *progress) set(phase string, frac func() float64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.phase, p.frac = phase, frac
	p.mu.Unlock()
	if !p.tty {
		p.mu.Lock()
		due := time.Since(p.drawn) >= time.Second
		p.mu.Unlock()
		if due {
			p.draw()
		}
	}
}

func (p *progress) loop() {
	defer close(p.done)
	every := 5 * time.Second
	if p.tty {
		every = 250 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			if p.tty {
				p.mu.Lock()
				fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", p.last))
				p.mu.Unlock()
			}
			return
		case <-t.C:
			p.draw()
		}
	}
}

func (p *progress) draw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drawn = time.Now()
	line := renderBar(p.phase, p.frac, time.Since(p.start)) + "  " + p.stats()
	if p.tty {
		pad := max(p.last-len(line), 0)
		fmt.Fprintf(p.w, "\r%s%s", line, strings.Repeat(" ", pad))
		p.last = len(line)
	} else {
		fmt.Fprintln(p.w, line)
	}
}

func renderBar(phase string, frac func() float64, elapsed time.Duration) string {
	const width = 24
	bar := strings.Repeat("?", width)
	pct := "   "
	if frac != nil {
		f := min(max(frac(), 0), 1)
		n := int(f * width)
		bar = strings.Repeat("#", n) + strings.Repeat("-", width-n)
		pct = fmt.Sprintf("%3.0f%%", f*100)
	}
	return fmt.Sprintf("[%s] %s %-22s %6.1fs", bar, pct, phase, elapsed.Seconds())
}

// close stops drawing and clears the bar from a terminal.
func (p *progress) close() {
	if p == nil {
		return
	}
	close(p.stop)
	<-p.done
}
