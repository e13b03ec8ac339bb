package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longpoll/longpoll/internal/sysx"
)

// WorkerEnv is set to "1" in the environment of the worker processes the
// bench starts: a binary that finds it set must call Worker instead of
// doing its usual work. The longpoll binary does so in `longpoll bench`;
// a test binary does so in TestMain.
const WorkerEnv = "LONGPOLL_BENCH_WORKER"

// IsWorker reports whether this process was started as a bench worker.
func IsWorker() bool { return os.Getenv(WorkerEnv) == "1" }

// job is what a worker is told to do, the first line on its stdin:
// subscribers First to First+Count-1 of the run, subscriber i on topic
// Topics[i%len(Topics)] at server Servers[(i/len(Topics))%len(Servers)]
// (so every topic has subscribers on every server) from source
// address SourceAddrs[i%len].
type job struct {
	Protocol    string        `json:"protocol"`
	Transport   string        `json:"transport,omitempty"` // TransportPoll ("") or TransportSSE
	Servers     []string      `json:"servers"`
	Topics      []string      `json:"topics"`
	First       int           `json:"first"`
	Count       int           `json:"count"`
	SourceAddrs []string      `json:"source_addrs"`
	Hold        time.Duration `json:"hold"`
	// PerNumber asks for the count and latest receipt of each message
	// number (fanout rounds).
	PerNumber bool `json:"per_number"`
	// Unmeasured messages, numbers 1 to Unmeasured (fanout's warm-up
	// rounds), are counted but their latency is not recorded.
	Unmeasured uint64 `json:"unmeasured,omitempty"`
	// ReadFirst: a subscriber re-polls once every subscriber of the
	// worker has read the message it read, or readFirstWait after.
	ReadFirst bool `json:"read_first,omitempty"`
	// Token is every subscriber's bearer token, unless Tokens gives
	// subscriber First+k its own as Tokens[k].
	Token  string   `json:"token,omitempty"`
	Tokens []string `json:"tokens,omitempty"`
}

// stopMsg ends a worker's job, the second line on its stdin; it tells how
// many messages were published to each topic, for counting losses.
type stopMsg struct {
	Published []uint64 `json:"published"`
}

// event is one line a worker writes on its stdout.
type event struct {
	Kind     string        `json:"k"` // "p": progress; "r": result
	Open     int64         `json:"open"`
	Polls    uint64        `json:"polls"`
	Received uint64        `json:"received"`
	Errors   uint64        `json:"errors"`
	Result   *workerResult `json:"result,omitempty"`
}

// workerResult is what a worker's subscribers saw.
type workerResult struct {
	Latency Histogram `json:"latency"`
	// Arrival is the latency to the client's socket, where known: see
	// Result.Arrival.
	Arrival    Histogram             `json:"arrival"`
	Received   uint64                `json:"received"`
	Duplicates uint64                `json:"duplicates"`
	Reordered  uint64                `json:"reordered"`
	Lost       uint64                `json:"lost"`
	Gaps       uint64                `json:"gaps"`
	Errors     uint64                `json:"errors"`
	FirstError string                `json:"first_error,omitempty"`
	PerNumber  map[uint64]numberStat `json:"per_number,omitempty"`
	// PerServer is Received by the server the subscribers polled, in the
	// order of the job's Servers.
	PerServer []uint64 `json:"per_server"`
}

// numberStat is how many subscribers received one message number, and the
// longest publish-to-receive latency among them.
type numberStat struct {
	Count      uint64        `json:"count"`
	Max        time.Duration `json:"max"`
	MaxArrival time.Duration `json:"max_arrival,omitempty"`
}

func (r *workerResult) merge(o *workerResult) {
	r.Latency.Merge(&o.Latency)
	r.Arrival.Merge(&o.Arrival)
	r.Received += o.Received
	r.Duplicates += o.Duplicates
	r.Reordered += o.Reordered
	r.Lost += o.Lost
	r.Gaps += o.Gaps
	r.Errors += o.Errors
	if r.FirstError == "" {
		r.FirstError = o.FirstError
	}
	for i, n := range o.PerServer {
		if i >= len(r.PerServer) {
			r.PerServer = append(r.PerServer, make([]uint64, i+1-len(r.PerServer))...)
		}
		r.PerServer[i] += n
	}
	for n, s := range o.PerNumber {
		if r.PerNumber == nil {
			r.PerNumber = make(map[uint64]numberStat)
		}
		c := r.PerNumber[n]
		c.Count += s.Count
		c.Max = max(c.Max, s.Max)
		c.MaxArrival = max(c.MaxArrival, s.MaxArrival)
		r.PerNumber[n] = c
	}
}

// Worker runs a worker's job: it reads the job from in, runs its
// subscribers while writing progress to out every 100 ms, and on the stop
// line (or the end of in, or ctx) stops them and writes its result. It
// returns the process exit code.
func Worker(ctx context.Context, in io.Reader, out io.Writer) int {
	sysx.RaiseOpenFiles()
	dec := json.NewDecoder(in)
	var j job
	if err := dec.Decode(&j); err != nil {
		fmt.Fprintln(os.Stderr, "bench worker: reading the job:", err)
		return 1
	}
	ws, err := newWorkerSet(&j)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench worker:", err)
		return 1
	}
	defer ws.close()
	enc := json.NewEncoder(out)
	var encMu sync.Mutex
	emit := func(e *event) error {
		encMu.Lock()
		defer encMu.Unlock()
		return enc.Encode(e)
	}

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range ws.subs {
		wg.Go(func() { ws.subs[i].run(ctx) })
	}
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if emit(ws.progress()) != nil {
					cancel() // the parent is gone
				}
			}
		}
	}()
	stopc := make(chan stopMsg, 1)
	go func() {
		var s stopMsg
		dec.Decode(&s) // the end of in stops the job too
		stopc <- s
	}()
	var stop stopMsg
	select {
	case stop = <-stopc:
	case <-ctx.Done():
	}
	cancel()
	wg.Wait()
	<-progressDone
	r := ws.result(stop.Published)
	e := ws.progress()
	e.Kind, e.Result = "r", r
	if err := emit(e); err != nil {
		fmt.Fprintln(os.Stderr, "bench worker: writing the result:", err)
		return 1
	}
	return 0
}

// workerSet is one worker's subscribers and what they share.
type workerSet struct {
	job     *job
	targets []*target     // one per server
	dialer  []*net.Dialer // one per source address
	dials   chan struct{} // bounds connection attempts in flight
	subs    []subscriber

	open, polls, received, errors atomic.Uint64
	receivedBy                    []atomic.Uint64 // per server

	mu        sync.Mutex
	latency   Histogram
	arrival   Histogram
	perNumber map[uint64]numberStat
	rounds    map[uint64]*roundWait // ReadFirst: message numbers not all read yet
	released  uint64                // ReadFirst: the last number released
	gaps      uint64
	firstErr  string
}

func newWorkerSet(j *job) (*workerSet, error) {
	if len(j.Servers) == 0 || len(j.Topics) == 0 {
		return nil, errors.New("a job without servers or topics")
	}
	ws := &workerSet{job: j, dials: make(chan struct{}, 64), receivedBy: make([]atomic.Uint64, len(j.Servers))}
	for _, s := range j.Servers {
		t, err := newTarget(j.Protocol, s, j.Hold, 1)
		if err != nil {
			return nil, err
		}
		ws.targets = append(ws.targets, t)
	}
	if j.PerNumber {
		ws.perNumber = make(map[uint64]numberStat)
	}
	for _, a := range j.SourceAddrs {
		ip := net.ParseIP(a)
		if ip == nil {
			return nil, fmt.Errorf("bad source address %q", a)
		}
		ws.dialer = append(ws.dialer, &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 10 * time.Second})
	}
	if len(ws.dialer) == 0 {
		ws.dialer = []*net.Dialer{{Timeout: 10 * time.Second}}
	}
	ws.subs = make([]subscriber, j.Count)
	for k := range ws.subs {
		i := j.First + k
		ws.subs[k] = subscriber{ws: ws, topicIdx: i % len(j.Topics), serverIdx: (i / len(j.Topics)) % len(ws.targets), dialer: ws.dialer[i%len(ws.dialer)]}
		tok := j.Token
		if k < len(j.Tokens) {
			tok = j.Tokens[k]
		}
		ws.subs[k].st.auth = authLine(tok)
	}
	return ws, nil
}

func (ws *workerSet) close() {
	for _, t := range ws.targets {
		t.close()
	}
}

func (ws *workerSet) progress() *event {
	return &event{Kind: "p", Open: int64(ws.open.Load()), Polls: ws.polls.Load(), Received: ws.received.Load(), Errors: ws.errors.Load()}
}

func (ws *workerSet) fail(err error) {
	ws.errors.Add(1)
	ws.mu.Lock()
	if ws.firstErr == "" {
		ws.firstErr = err.Error()
	}
	ws.mu.Unlock()
}

func (ws *workerSet) result(published []uint64) *workerResult {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	r := &workerResult{Latency: ws.latency, Arrival: ws.arrival, Received: ws.received.Load(), Gaps: ws.gaps, Errors: ws.errors.Load(), FirstError: ws.firstErr, PerNumber: ws.perNumber}
	r.PerServer = make([]uint64, len(ws.receivedBy))
	for i := range ws.receivedBy {
		r.PerServer[i] = ws.receivedBy[i].Load()
	}
	for i := range ws.subs {
		s := &ws.subs[i]
		r.Duplicates += s.seq.Duplicates
		r.Reordered += s.seq.Reordered
		if s.topicIdx < len(published) {
			r.Lost += s.seq.Lost(published[s.topicIdx])
		}
	}
	return r
}

// subscriber is one connection polling one topic again and again.
type subscriber struct {
	ws        *workerSet
	topicIdx  int
	serverIdx int
	dialer    *net.Dialer
	st        subState
	seq       Sequence
}

func (s *subscriber) run(ctx context.Context) {
	if s.ws.job.Transport == TransportSSE {
		s.runSSE(ctx)
		return
	}
	ws := s.ws
	topic := ws.job.Topics[s.topicIdx]
	target := ws.targets[s.serverIdx]
	var (
		conn    net.Conn
		str     stream
		br      *bufio.Reader
		renew   time.Time // when the connection's deadline is to be pushed on
		req     []byte
		backoff time.Duration
		rep     reply
		ps      []payload
	)
	var connMu sync.Mutex
	stop := context.AfterFunc(ctx, func() {
		connMu.Lock()
		if conn != nil {
			conn.Close()
		}
		connMu.Unlock()
	})
	defer stop()
	closeConn := func() {
		connMu.Lock()
		if conn != nil {
			conn.Close()
			conn = nil
			ws.open.Add(^uint64(0))
		}
		connMu.Unlock()
	}
	defer closeConn()
	for ctx.Err() == nil {
		if backoff > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
		}
		if conn == nil {
			c, err := s.dial(ctx, target)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				backoff = nextBackoff(backoff)
				continue
			}
			connMu.Lock()
			conn = c
			connMu.Unlock()
			ws.open.Add(1)
			if ctx.Err() != nil { // cancelled while connecting
				return
			}
			if str, err = newStream(c); err != nil {
				closeConn()
				ws.fail(err)
				backoff = nextBackoff(backoff)
				continue
			}
			br = bufio.NewReaderSize(str, 4096)
			renew = time.Time{}
		}
		req = target.pollRequest(req[:0], topic, &s.st)
		// A poll fails after hold+30s to hold+40s: the deadline is pushed
		// on at most every 10 s, as each push costs timer work.
		if now := time.Now(); !now.Before(renew) {
			conn.SetDeadline(now.Add(target.hold + 40*time.Second))
			renew = now.Add(10 * time.Second)
		}
		ws.polls.Add(1)
		err := roundTrip(str, br, req, &rep)
		if err != nil {
			closeConn()
			if ctx.Err() == nil {
				ws.fail(fmt.Errorf("polling: %w", err))
				backoff = nextBackoff(backoff)
			}
			continue
		}
		now := time.Now()
		arrived, atSocket := str.arrived()
		if rep.close {
			closeConn()
		}
		var gaps int
		ps, gaps, err = target.parseReply(&rep, &s.st, ps)
		if err != nil {
			ws.fail(err)
			backoff = nextBackoff(max(backoff, 250*time.Millisecond))
			continue
		}
		backoff = 0
		if len(ps) == 0 && gaps == 0 {
			continue
		}
		ws.received.Add(uint64(len(ps)))
		ws.receivedBy[s.serverIdx].Add(uint64(len(ps)))
		var round <-chan struct{}
		ws.mu.Lock()
		ws.gaps += uint64(gaps)
		for _, p := range ps {
			ws.recordLocked(p, now, arrived, atSocket)
		}
		if ws.job.ReadFirst && ws.perNumber != nil && len(ps) > 0 {
			last := ps[len(ps)-1].N
			round = ws.roundLocked(last, ws.perNumber[last].Count)
		}
		ws.mu.Unlock()
		for _, p := range ps {
			s.seq.Observe(p.N)
		}
		if round != nil {
			select {
			case <-round:
			case <-ctx.Done():
			}
		}
	}
}

// recordLocked records the latency of p, read at now, and when the
// system gives it, the time it reached the socket (arrived); the caller
// holds ws.mu.
func (ws *workerSet) recordLocked(p payload, now, arrived time.Time, atSocket bool) {
	lat := now.Sub(time.Unix(0, p.T))
	var arr time.Duration
	if atSocket {
		arr = max(arrived.Sub(time.Unix(0, p.T)), 0)
	}
	if p.N > ws.job.Unmeasured {
		ws.latency.Record(lat)
		if atSocket {
			ws.arrival.Record(arr)
		}
	}
	if ws.perNumber != nil {
		c := ws.perNumber[p.N]
		c.Count++
		c.Max = max(c.Max, lat)
		c.MaxArrival = max(c.MaxArrival, arr)
		ws.perNumber[p.N] = c
	}
}

// dial connects to target, with at most len(ws.dials) connection
// attempts of the worker in flight; an error that is not the run's end
// is counted.
func (s *subscriber) dial(ctx context.Context, target *target) (net.Conn, error) {
	select {
	case s.ws.dials <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	c, err := s.dialer.DialContext(ctx, "tcp", target.base.Host)
	<-s.ws.dials
	if err != nil && ctx.Err() == nil {
		s.ws.fail(fmt.Errorf("connecting: %w", err))
	}
	return c, err
}

// readFirstWait bounds how long a subscriber waits for the others to read
// a message (ReadFirst): a subscriber whose message was lost must not
// hold the rest for longer.
const readFirstWait = time.Second

// roundWait is the subscribers waiting for the rest to read one message.
type roundWait struct {
	done  chan struct{}
	timer *time.Timer
}

// roundLocked returns what to wait on before re-polling after reading
// message n, of which the worker's subscribers have read count: a channel
// closed once all of them have read it, or readFirstWait after the first
// did; nil when that happened already. ws.mu is held.
func (ws *workerSet) roundLocked(n, count uint64) <-chan struct{} {
	if n <= ws.released {
		return nil
	}
	if count >= uint64(len(ws.subs)) {
		ws.releaseLocked(n)
		return nil
	}
	if ws.rounds == nil {
		ws.rounds = make(map[uint64]*roundWait)
	}
	w := ws.rounds[n]
	if w == nil {
		w = &roundWait{done: make(chan struct{})}
		w.timer = time.AfterFunc(readFirstWait, func() {
			ws.mu.Lock()
			ws.releaseLocked(n)
			ws.mu.Unlock()
		})
		ws.rounds[n] = w
	}
	return w.done
}

// releaseLocked lets the subscribers waiting after messages up to n
// re-poll. ws.mu is held.
func (ws *workerSet) releaseLocked(n uint64) {
	for m, w := range ws.rounds {
		if m <= n {
			w.timer.Stop()
			close(w.done)
			delete(ws.rounds, m)
		}
	}
	ws.released = max(ws.released, n)
}

func nextBackoff(d time.Duration) time.Duration {
	return min(max(2*d, 50*time.Millisecond), 2*time.Second)
}

var errWorkerExited = errors.New("bench worker exited without a result")
