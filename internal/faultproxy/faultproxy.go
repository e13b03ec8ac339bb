// Package faultproxy is a TCP proxy for tests that puts a bad network
// between a client and a server: it cuts connections at random points
// (before a request reaches the server, while it is held, in the middle of
// a reply), stalls them without a word, delays bytes, and refuses new
// connections for a while.
//
// Faults are drawn per request, not per connection, so that keep-alive
// connections suffer them too: each chunk of bytes the client sends while
// no fault is pending on its connection draws at most one, from a seeded
// random source. With HTTP/1.1 a chunk is a request (or a part of a large
// one).
package faultproxy

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Faults sets the chances of each fault, per client chunk. Their sum must
// not exceed 1.
type Faults struct {
	// CutBefore: the connection is closed instead of forwarding the
	// chunk, so the request never reaches the server.
	CutBefore float64
	// CutHeld: the chunk is forwarded and the connection is cut at a
	// uniformly random time below HeldWithin: usually while a poll is held.
	CutHeld    float64
	HeldWithin time.Duration
	// CutReply: the chunk is forwarded and the connection is cut after 0
	// to ReplyBytes bytes of the reply, when more arrive: in the middle of
	// the reply, or between it and the next.
	CutReply   float64
	ReplyBytes int
	// Stall: like CutReply, but the connection then stops forwarding in
	// both directions without closing, like a middlebox that forgot it. It
	// closes when the client leaves.
	Stall float64
	// Delay: each chunk forwarded, either way, waits a uniformly random
	// time below Delay first.
	Delay time.Duration
}

// Stats counts what the proxy did.
type Stats struct {
	Conns     int64 // connections accepted
	CutBefore int64 // faults that fired, by kind
	CutHeld   int64
	CutReply  int64
	Stalled   int64
}

// Proxy forwards TCP connections from its address to a target.
type Proxy struct {
	target string
	addr   string
	ctx    context.Context // ends at Close: aborts dials
	cancel context.CancelFunc

	mu     sync.Mutex
	ln     net.Listener // nil while refusing
	faults Faults
	rnd    *rand.Rand
	links  map[*link]struct{}
	closed bool
	wg     sync.WaitGroup

	conns, cutBefore, cutHeld, cutReply, stalled atomic.Int64
}

// New starts a proxy on 127.0.0.1 with a free port, forwarding to target
// (host:port), without faults until SetFaults. seed makes the draws
// repeatable (the timing of the goroutines is not).
func New(target string, seed uint64) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		target: target,
		addr:   ln.Addr().String(),
		ln:     ln,
		rnd:    rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		links:  make(map[*link]struct{}),
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(1)
	go p.serve(ln)
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.addr }

// URL is "http://" + Addr.
func (p *Proxy) URL() string { return "http://" + p.addr }

// SetFaults sets the faults drawn from now on, on every connection.
func (p *Proxy) SetFaults(f Faults) {
	p.mu.Lock()
	p.faults = f
	p.mu.Unlock()
}

// Stats returns what the proxy did so far.
func (p *Proxy) Stats() Stats {
	return Stats{
		Conns:     p.conns.Load(),
		CutBefore: p.cutBefore.Load(),
		CutHeld:   p.cutHeld.Load(),
		CutReply:  p.cutReply.Load(),
		Stalled:   p.stalled.Load(),
	}
}

// Refuse stops listening: connection attempts are refused (the port is
// closed) until Resume. Open connections go on.
func (p *Proxy) Refuse() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
}

// Resume listens again on the same address after Refuse.
func (p *Proxy) Resume() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return net.ErrClosed
	}
	if p.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		return err
	}
	p.ln = ln
	p.wg.Add(1)
	go p.serve(ln)
	return nil
}

// CutAll closes every open connection now.
func (p *Proxy) CutAll() {
	p.mu.Lock()
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		l.close()
	}
}

// Close stops the proxy, closes every connection and waits for its
// goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	p.mu.Unlock()
	p.cancel()
	p.CutAll()
	p.wg.Wait()
	return nil
}

func (p *Proxy) serve(ln net.Listener) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // closed by Refuse or Close
		}
		p.accept(c)
	}
}

// link is one proxied connection.
type link struct {
	client net.Conn
	done   chan struct{} // closed by close
	// budget is how many more reply bytes pass before a pending CutReply
	// or Stall fires; -1 when none is pending.
	budget    atomic.Int64
	stallMode atomic.Bool // the pending budget fault is a Stall
	stalled   atomic.Bool // nothing more is forwarded either way

	mu     sync.Mutex
	server net.Conn // nil until dialled
	closed bool
}

func (l *link) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	close(l.done)
	l.client.Close()
	if l.server != nil {
		l.server.Close()
	}
}

// setServer records the dialled server side; it reports false, having
// closed s, if the link is already closed.
func (l *link) setServer(s net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		s.Close()
		return false
	}
	l.server = s
	return true
}

func (p *Proxy) accept(c net.Conn) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.Close()
		return
	}
	l := &link{client: c, done: make(chan struct{})}
	l.budget.Store(-1)
	seeds := [2]uint64{p.rnd.Uint64(), p.rnd.Uint64()}
	p.links[l] = struct{}{}
	p.wg.Add(1)
	p.mu.Unlock()
	p.conns.Add(1)
	go p.run(l, seeds)
}

func (p *Proxy) run(l *link, seeds [2]uint64) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.links, l)
		p.mu.Unlock()
	}()
	var d net.Dialer
	s, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		l.close()
		return
	}
	if !l.setServer(s) {
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { p.upstream(l, s, seeds[0]) })
	wg.Go(func() { p.downstream(l, s, seeds[1]) })
	wg.Wait()
}

// kind is a fault drawn for one client chunk.
type kind int

const (
	none kind = iota
	cutBefore
	cutHeld
	cutReply
	stall
)

func (p *Proxy) delay() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.faults.Delay
}

// draw picks the fault of one client chunk and its parameters.
func (p *Proxy) draw() (k kind, after time.Duration, replyBytes int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.faults
	u := p.rnd.Float64()
	switch {
	case u < f.CutBefore:
		k = cutBefore
	case u < f.CutBefore+f.CutHeld:
		k = cutHeld
		after = time.Duration(p.rnd.Int64N(int64(max(f.HeldWithin, 1))))
	case u < f.CutBefore+f.CutHeld+f.CutReply:
		k = cutReply
		replyBytes = p.rnd.IntN(max(f.ReplyBytes, 0) + 1)
	case u < f.CutBefore+f.CutHeld+f.CutReply+f.Stall:
		k = stall
		replyBytes = p.rnd.IntN(max(f.ReplyBytes, 0) + 1)
	}
	return k, after, replyBytes
}

// wait waits a random time below delay; it reports false if the link
// closed meanwhile.
func wait(l *link, rnd *rand.Rand, delay time.Duration) bool {
	if delay <= 0 {
		return true
	}
	t := time.NewTimer(time.Duration(rnd.Int64N(int64(delay))))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.done:
		return false
	}
}

// upstream copies the client's bytes to the server, drawing a fault for
// each chunk while none is pending.
func (p *Proxy) upstream(l *link, s net.Conn, seed uint64) {
	defer l.close()
	rnd := rand.New(rand.NewPCG(seed, seed>>1|1))
	buf := make([]byte, 32<<10)
	var held *time.Timer
	defer func() {
		if held != nil {
			held.Stop()
		}
	}()
	for {
		n, err := l.client.Read(buf)
		// A stalled link reads on only to notice the client leave.
		if n > 0 && !l.stalled.Load() {
			k, after, replyBytes, delay := none, time.Duration(0), 0, p.delay()
			if held == nil && l.budget.Load() < 0 { // no fault pending
				k, after, replyBytes = p.draw()
			}
			switch k {
			case cutBefore:
				p.cutBefore.Add(1)
				return
			case cutHeld:
				held = time.AfterFunc(after, func() {
					select {
					case <-l.done:
					default:
						p.cutHeld.Add(1)
						l.close()
					}
				})
			case cutReply, stall:
				l.stallMode.Store(k == stall)
				l.budget.Store(int64(replyBytes))
			}
			if !wait(l, rnd, delay) {
				return
			}
			if _, werr := s.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// downstream copies the server's bytes to the client, firing a pending
// CutReply or Stall when its budget is spent.
func (p *Proxy) downstream(l *link, s net.Conn, seed uint64) {
	defer l.close()
	rnd := rand.New(rand.NewPCG(seed, seed>>1|1))
	buf := make([]byte, 32<<10)
	for {
		n, err := s.Read(buf)
		if n > 0 && !l.stalled.Load() {
			if !wait(l, rnd, p.delay()) {
				return
			}
			chunk, fire := buf[:n], false
			if b := l.budget.Load(); b >= 0 {
				// The fault fires in the chunk that passes the budget.
				fire = int64(n) > b
				chunk = chunk[:min(int64(n), b)]
				l.budget.Store(b - int64(len(chunk)))
			}
			if len(chunk) > 0 {
				if _, werr := l.client.Write(chunk); werr != nil {
					return
				}
			}
			if fire {
				if l.stallMode.Load() {
					p.stalled.Add(1)
					l.stalled.Store(true)
					<-l.done
				} else {
					p.cutReply.Add(1)
				}
				return
			}
		}
		if err != nil {
			return
		}
	}
}
