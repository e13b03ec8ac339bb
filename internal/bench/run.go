package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Result is what a run measured. Durations are in milliseconds, CPU time
// per delivery in microseconds, memory in bytes.
type Result struct {
	Scenario string `json:"scenario"`
	Protocol string `json:"protocol"`
	// Transport is how the subscribers received: poll or sse.
	Transport string `json:"transport,omitempty"`
	// Server is the server's base URL, or the nodes' comma-separated;
	// Servers lists them when there are several.
	Server      string    `json:"server"`
	Servers     []string  `json:"servers,omitempty"`
	Started     time.Time `json:"started"`
	ElapsedMS   float64   `json:"elapsed_ms"`
	LoadBefore  string    `json:"load_average_before"`
	LoadAfter   string    `json:"load_average_after"`
	Subscribers int       `json:"subscribers"`
	Topics      int       `json:"topics"`
	Publishers  int       `json:"publishers,omitempty"`
	Messages    int       `json:"messages,omitempty"`
	Warmup      int       `json:"warmup,omitempty"`
	Rate        float64   `json:"rate,omitempty"`
	Size        int       `json:"size"`
	Workers     int       `json:"workers"`
	SourceAddrs int       `json:"source_addrs"`
	// ReadFirst: the subscribers re-polled once all had read each round
	// (Config.ReadFirst).
	ReadFirst bool `json:"read_first,omitempty"`
	// ServerPID is the measured server's pid when there is one;
	// ServerPIDs lists them when there are several, in the order of
	// Servers, and the server figures below are their sums.
	ServerPID  int   `json:"server_pid,omitempty"`
	ServerPIDs []int `json:"server_pids,omitempty"`

	// Held is the number of polls the server reported held at once,
	// summed over the nodes; HeldPerServer is each node's count then,
	// when there are several.
	Held          int   `json:"held"`
	HeldPerServer []int `json:"held_per_server,omitempty"`
	// RSSBefore and RSSHeld are the server's resident memory before the
	// subscribers connected and while they were held (capacity); with
	// several pids, their sums, and the PerPID fields give each. RSSPerPoll
	// divides the growth by the polls held by the nodes measured.
	RSSBefore       int64   `json:"rss_before_bytes,omitempty"`
	RSSHeld         int64   `json:"rss_held_bytes,omitempty"`
	RSSBeforePerPID []int64 `json:"rss_before_per_pid_bytes,omitempty"`
	RSSHeldPerPID   []int64 `json:"rss_held_per_pid_bytes,omitempty"`
	RSSPerPoll      float64 `json:"rss_per_poll_bytes,omitempty"`
	RSSAfter        int64   `json:"rss_after_bytes,omitempty"`

	Published     uint64 `json:"published"`
	PublishErrors uint64 `json:"publish_errors"`
	Delivered     uint64 `json:"delivered"`
	// DeliveredPerServer is Delivered by the node the subscribers polled,
	// when there are several.
	DeliveredPerServer []uint64 `json:"delivered_per_server,omitempty"`
	Expected           uint64   `json:"expected"`
	PublishSeconds     float64  `json:"publish_seconds,omitempty"`
	WindowSeconds      float64  `json:"window_seconds,omitempty"`
	// WindowStartMS is when the measured window began, from the run's
	// start.
	WindowStartMS   float64 `json:"window_start_ms,omitempty"`
	PublishedPerSec float64 `json:"published_per_second,omitempty"`
	DeliveredPerSec float64 `json:"delivered_per_second,omitempty"`
	// ServerCPU is the server's user+system CPU time (summed over the
	// pids) over the window from the first publish to the last delivery;
	// CPUPerDelivery divides it by Delivered.
	ServerCPUMS    float64 `json:"server_cpu_ms,omitempty"`
	CPUPerDelivery float64 `json:"server_cpu_per_delivery_us,omitempty"`
	// BenchCPUMS is the CPU time of the bench itself and its workers over
	// the whole run.
	BenchCPUMS float64 `json:"bench_cpu_ms"`
	// LoadCPUMS is the CPU time of the bench and its workers over the
	// window, and LoadCPUPerDelivery that divided by the deliveries: with
	// the load on one core, a window's load CPU near its length says the
	// load generator, not the server, set the pace.
	LoadCPUMS          float64 `json:"load_cpu_ms,omitempty"`
	LoadCPUPerDelivery float64 `json:"load_cpu_per_delivery_us,omitempty"`

	Latency Summary `json:"latency"`
	// Arrival is the latency to the subscriber's socket: the kernel's
	// receive time of the reply's last segment (SO_TIMESTAMPNS), where
	// Latency takes the time the load generator read it. One load process
	// plays thousands of clients on one core, so a fan-out's replies
	// queue in it, and Latency includes that queue; a client on its own
	// machine reads its reply as it arrives. Absent where the system
	// gives no such time.
	Arrival    *Summary   `json:"arrival,omitempty"`
	Rounds     []Round    `json:"rounds,omitempty"`
	Lost       uint64     `json:"lost"`
	Duplicates uint64     `json:"duplicates"`
	Reordered  uint64     `json:"reordered"`
	Gaps       uint64     `json:"gaps"`
	PollErrors uint64     `json:"poll_errors"`
	FirstError string     `json:"first_error,omitempty"`
	Histogram  *Histogram `json:"histogram"`
}

// Round is one fanout round: the time from its publish until every
// subscriber had it.
type Round struct {
	Number      int     `json:"number"`
	Published   float64 `json:"published_ms"` // from the run's start
	Received    uint64  `json:"received"`
	AllReceived float64 `json:"all_received_ms"`
	// AllArrived is when the last reply reached its subscriber's socket
	// (see Result.Arrival).
	AllArrived float64 `json:"all_arrived_ms,omitempty"`
}

// Run runs one scenario against cfg's server, or the nodes of one
// cluster. cfg must have passed Check. It is bounded by cfg.Timeout; on an
// error the partial result, when there is one, comes with it.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if len(cfg.servers) == 0 {
		return nil, errors.New("bench: Run needs a Config that passed Check")
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	r := &runner{cfg: &cfg, res: &Result{
		Scenario: cfg.Scenario, Protocol: cfg.Protocol, Transport: cfg.Transport, Server: strings.Join(cfg.servers, ","), Started: time.Now().UTC(),
		LoadBefore: LoadAverage(), Subscribers: cfg.Subscribers, Topics: cfg.Topics, Size: cfg.Size,
		Workers: cfg.Workers, SourceAddrs: cfg.SourceAddrs,
	}}
	if len(cfg.servers) > 1 {
		r.res.Servers = cfg.servers
	}
	defer func() {
		r.res.ElapsedMS = ms(time.Since(r.res.Started))
		r.res.LoadAfter = LoadAverage()
	}()
	for _, s := range cfg.servers {
		t, err := newTarget(cfg.Protocol, s, cfg.PollTimeout, cfg.Publishers+16)
		if err != nil {
			return nil, err
		}
		t.token = cfg.Token
		r.targets = append(r.targets, t)
		defer t.close()
	}
	// Every publish goes to the first node, so that deliveries to the
	// others' subscribers prove wake-ups across nodes.
	r.pub = r.targets[0]
	r.pids = cfg.pids
	if cfg.Spawn != "" {
		sp, err := spawn(cfg.Spawn)
		if err != nil {
			return nil, err
		}
		defer sp.stop(10 * time.Second)
		ready, cancel := context.WithTimeout(ctx, 15*time.Second)
		err = sp.waitReady(ready, r.pub.readyURL())
		cancel()
		if err != nil {
			return nil, err
		}
		r.pids = []int{sp.pid()}
	}
	switch len(r.pids) {
	case 0:
	case 1:
		r.res.ServerPID = r.pids[0]
	default:
		r.res.ServerPIDs = r.pids
	}
	if err := r.run(ctx); err != nil {
		return r.res, err
	}
	return r.res, nil
}

type runner struct {
	cfg       *Config
	res       *Result
	targets   []*target // one per server
	pub       *target   // the first: where every publish goes
	pids      []int     // measured, pids[j] the node of targets[j]
	topics    []string
	subsOf    []uint64 // subscribers per topic
	published []uint64 // per topic
	pool      *pool
	prog      *progress
	held      atomic.Int64 // last count the server reported
	// unreceived is how many deliveries drain gave up waiting for: lost,
	// or still to come. The waits after it no longer count on them.
	unreceived uint64
	pubErrs    atomic.Uint64
	firstErr   atomic.Pointer[string]
	pubMu      sync.Mutex // guards published
}

func (r *runner) run(ctx context.Context) error {
	cfg := r.cfg
	var id [4]byte
	rand.Read(id[:])
	runID := hex.EncodeToString(id[:])
	r.topics = make([]string, cfg.Topics)
	for i := range r.topics {
		r.topics[i] = fmt.Sprintf("bench.%s.%d", runID, i)
	}
	r.subsOf = make([]uint64, cfg.Topics)
	for i := range cfg.Subscribers {
		r.subsOf[i%cfg.Topics]++
	}
	r.published = make([]uint64, cfg.Topics)

	if len(r.pids) > 0 {
		rss, each, err := r.readRSS()
		if err != nil {
			return err
		}
		r.res.RSSBefore, r.res.RSSBeforePerPID = rss, each
	}
	var err error
	r.pool, err = startPool(cfg, r.topics)
	if err != nil {
		return err
	}
	defer r.pool.kill()
	r.prog = newProgress(cfg.Progress, r.stats)
	defer r.prog.close()

	if err := r.waitHeld(ctx, "connecting", 0); err != nil {
		return r.finish(ctx, err)
	}
	if d := time.Until(r.res.Started.Add(cfg.StartAfter)); d > 0 {
		r.prog.set("waiting for --start-after", nil)
		select {
		case <-ctx.Done():
			return r.finish(ctx, ctx.Err())
		case <-time.After(d):
		}
	}
	switch cfg.Scenario {
	case Capacity:
		err = r.capacity(ctx)
	case Fanout:
		err = r.fanout(ctx)
	case Throughput:
		err = r.throughput(ctx)
	case Burst:
		err = r.burst(ctx)
	}
	return r.finish(ctx, err)
}

// stats is the progress bar's counters.
func (r *runner) stats() string {
	t := r.pool.totals()
	return fmt.Sprintf("conns %d/%d  held %d  received %d  published %d  errors %d",
		t.Open, r.cfg.Subscribers, r.held.Load(), t.Received, sum(r.publishedSnapshot()), t.Errors+r.pubErrs.Load())
}

func (r *runner) publishedSnapshot() []uint64 {
	r.pubMu.Lock()
	defer r.pubMu.Unlock()
	return append([]uint64(nil), r.published...)
}

func sum(xs []uint64) (s uint64) {
	for _, x := range xs {
		s += x
	}
	return s
}

// finish stops the workers and fills the result from what they saw; err
// is the scenario's own error, returned unless nil.
func (r *runner) finish(ctx context.Context, err error) error {
	r.prog.set("stopping", nil)
	published := r.publishedSnapshot()
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	wr, werr := r.pool.stop(stopCtx, published)
	res := r.res
	res.Published = sum(published)
	res.PublishErrors = r.pubErrs.Load()
	for i, n := range published {
		res.Expected += n * r.subsOf[i]
	}
	res.Delivered = wr.Received
	if len(r.targets) > 1 {
		res.DeliveredPerServer = make([]uint64, len(r.targets))
		copy(res.DeliveredPerServer, wr.PerServer)
	}
	res.Latency = wr.Latency.Summarize()
	res.Histogram = &wr.Latency
	if wr.Arrival.Count() > 0 {
		a := wr.Arrival.Summarize()
		res.Arrival = &a
	}
	res.Lost, res.Duplicates, res.Reordered, res.Gaps = wr.Lost, wr.Duplicates, wr.Reordered, wr.Gaps
	res.PollErrors = wr.Errors
	res.FirstError = wr.FirstError
	if p := r.firstErr.Load(); p != nil && res.FirstError == "" {
		res.FirstError = *p
	}
	// The window leaves the warm-up out: so do the rates.
	measured := res.Delivered
	for n := uint64(1); n <= uint64(res.Warmup); n++ {
		measured -= min(measured, wr.PerNumber[n].Count)
	}
	if res.WindowSeconds > 0 {
		res.DeliveredPerSec = math.Round(float64(measured) / res.WindowSeconds)
		if res.ServerCPUMS > 0 && measured > 0 {
			res.CPUPerDelivery = math.Round(res.ServerCPUMS*1e3/float64(measured)*100) / 100
		}
		if res.LoadCPUMS > 0 && measured > 0 {
			res.LoadCPUPerDelivery = math.Round(res.LoadCPUMS*1e3/float64(measured)*100) / 100
		}
	}
	for i := range res.Rounds {
		st := wr.PerNumber[uint64(res.Rounds[i].Number)]
		res.Rounds[i].Received = st.Count
		res.Rounds[i].AllReceived = ms(st.Max)
		if res.Arrival != nil {
			res.Rounds[i].AllArrived = ms(st.MaxArrival)
		}
	}
	if len(r.pids) > 0 {
		if rss, _, e := r.readRSS(); e == nil {
			res.RSSAfter = rss
		}
	}
	res.BenchCPUMS = ms(ownCPU())
	return errors.Join(err, werr)
}

// waitHeld waits until the server holds every subscriber's poll, having
// first waited for the workers' receipts to reach received, less those
// drain gave up on.
func (r *runner) waitHeld(ctx context.Context, phase string, received uint64) error {
	received -= min(received, r.unreceived)
	n := int64(r.cfg.Subscribers)
	r.prog.set(phase, func() float64 {
		if t := r.pool.totals(); t.Open < n {
			return float64(t.Open) / float64(n) / 2
		}
		return 0.5 + float64(r.held.Load())/float64(n)/2
	})
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := r.pool.failed(); err != nil {
			return err
		}
		t := r.pool.totals()
		if t.Open >= n && t.Received >= received && t.Polls >= uint64(n) {
			held, each, err := r.serverHeld(ctx)
			if err != nil {
				return err
			}
			r.held.Store(int64(held))
			if held >= r.cfg.Subscribers {
				if held >= r.res.Held {
					r.setHeld(held, each)
				}
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %d of %d polls held when the run's --run-timeout ended: %w", phase, r.held.Load(), n, ctx.Err())
		case <-tick.C:
		}
	}
}

// serverHeld sums the servers' waiting counts over the topics: in all,
// and per server. Each node counts the polls it holds itself.
func (r *runner) serverHeld(ctx context.Context) (int, []int, error) {
	var (
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	per := make([]atomic.Int64, len(r.targets))
	jobs := len(r.targets) * len(r.topics)
	next := atomic.Int64{}
	for range min(16, jobs) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= jobs {
					return
				}
				s := i / len(r.topics)
				n, err := r.targets[s].waiting(ctx, r.topics[i%len(r.topics)])
				if err != nil {
					errMu.Lock()
					if first == nil {
						first = fmt.Errorf("%s: %w", r.cfg.servers[s], err)
					}
					errMu.Unlock()
					return
				}
				per[s].Add(int64(n))
			}
		})
	}
	wg.Wait()
	if first != nil && ctx.Err() == nil {
		return 0, nil, fmt.Errorf("counting held polls: %w", first)
	}
	total, each := 0, make([]int, len(per))
	for s := range per {
		each[s] = int(per[s].Load())
		total += each[s]
	}
	return total, each, nil
}

func (r *runner) setHeld(held int, each []int) {
	r.res.Held = held
	if len(each) > 1 {
		r.res.HeldPerServer = each
	}
}

// readRSS returns the resident memory of the measured pids: the sum, and
// each when there are several.
func (r *runner) readRSS() (int64, []int64, error) {
	var total int64
	each := make([]int64, len(r.pids))
	for i, pid := range r.pids {
		rss, err := ReadRSS(pid)
		if err != nil {
			return 0, nil, fmt.Errorf("reading the memory of server pid %d: %w", pid, err)
		}
		each[i] = rss
		total += rss
	}
	if len(each) < 2 {
		each = nil
	}
	return total, each, nil
}

// readCPU returns the CPU time the measured pids have used, summed.
func (r *runner) readCPU() (time.Duration, error) {
	var total time.Duration
	for _, pid := range r.pids {
		c, err := ReadCPU(pid)
		if err != nil {
			return 0, fmt.Errorf("reading the CPU time of server pid %d: %w", pid, err)
		}
		total += c
	}
	return total, nil
}

// loadCPU is the CPU time of this process and its workers so far; a
// worker whose time cannot be read counts nothing.
func (r *runner) loadCPU() time.Duration {
	total := selfCPU()
	for _, w := range r.pool.workers {
		if c, err := ReadCPU(w.cmd.Process.Pid); err == nil {
			total += c
		}
	}
	return total
}

func (r *runner) capacity(ctx context.Context) error {
	d := r.cfg.Duration
	start := time.Now()
	r.prog.set("holding", func() float64 { return float64(time.Since(start)) / float64(d) })
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
	}
	held, each, err := r.serverHeld(ctx)
	if err != nil {
		return err
	}
	r.held.Store(int64(held))
	r.setHeld(held, each)
	if len(r.pids) > 0 {
		rss, perPID, err := r.readRSS()
		if err != nil {
			return err
		}
		r.res.RSSHeld, r.res.RSSHeldPerPID = rss, perPID
		// pids[j] is the node of servers[j]: with fewer pids than
		// nodes, divide by the polls the measured nodes hold.
		measured := 0
		for _, n := range each[:len(r.pids)] {
			measured += n
		}
		if measured > 0 {
			r.res.RSSPerPoll = math.Round(float64(rss-r.res.RSSBefore) / float64(measured))
		}
	}
	return nil
}

// publishOne publishes message number n of topic i.
func (r *runner) publishOne(ctx context.Context, i int, pad string) error {
	r.pubMu.Lock()
	r.published[i]++
	n := r.published[i]
	r.pubMu.Unlock()
	err := r.pub.publish(ctx, r.topics[i], encodePayload(n, time.Now(), pad))
	if err != nil && ctx.Err() == nil {
		r.pubErrs.Add(1)
		s := err.Error()
		r.firstErr.CompareAndSwap(nil, &s)
	}
	return err
}

// window measures the server's CPU time and the wall time from its start
// to its end.
type window struct {
	r     *runner
	start time.Time
	cpu   time.Duration
	load  time.Duration
}

func (r *runner) startWindow() (*window, error) {
	w := &window{r: r, start: time.Now(), load: r.loadCPU()}
	r.res.WindowStartMS = ms(w.start.Sub(r.res.Started))
	if len(r.pids) > 0 {
		c, err := r.readCPU()
		if err != nil {
			return nil, err
		}
		w.cpu = c
	}
	return w, nil
}

func (w *window) end() {
	res := w.r.res
	res.WindowSeconds = time.Since(w.start).Seconds()
	res.LoadCPUMS = ms(w.r.loadCPU() - w.load)
	if len(w.r.pids) > 0 {
		if c, err := w.r.readCPU(); err == nil {
			res.ServerCPUMS = ms(c - w.cpu)
		}
	}
}

// drain waits until the subscribers have received every message published,
// no receipt has come for quiet, or ctx ends.
func (r *runner) drain(ctx context.Context, quiet time.Duration) {
	want := uint64(0)
	for i, n := range r.publishedSnapshot() {
		want += n * r.subsOf[i]
	}
	want -= min(want, r.unreceived)
	r.prog.set("receiving", func() float64 { return float64(r.pool.totals().Received) / float64(max(want, 1)) })
	last, lastAt := r.pool.totals().Received, time.Now()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		got := r.pool.totals().Received
		if got >= want || r.pool.failed() != nil {
			return
		}
		if got != last {
			last, lastAt = got, time.Now()
		} else if time.Since(lastAt) > quiet {
			r.unreceived += want - got
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (r *runner) fanout(ctx context.Context) error {
	pad := strings.Repeat("x", r.cfg.Size)
	r.res.Warmup = r.cfg.Warmup
	r.res.ReadFirst = r.cfg.ReadFirst
	// round publishes message n to every topic once every subscriber is
	// held again, and waits until it is received.
	round := func(n int, phase string) (time.Duration, error) {
		if n > 1 {
			if err := r.waitHeld(ctx, phase+": re-polling", uint64(n-1)*uint64(r.cfg.Subscribers)); err != nil {
				return 0, err
			}
		}
		if err := r.awaitTurn(ctx, n, phase); err != nil {
			return 0, err
		}
		r.prog.set(phase, nil)
		t0 := time.Now()
		for i := range r.topics {
			if err := r.publishOne(ctx, i, pad); err != nil {
				return 0, fmt.Errorf("%s: %w", phase, err)
			}
		}
		d := time.Since(t0)
		if n > r.cfg.Warmup {
			r.res.Rounds = append(r.res.Rounds, Round{Number: n, Published: ms(t0.Sub(r.res.Started))})
		}
		// A round's receipts stop for 3 s only when some were lost; the
		// rounds after it then wait for the rest only.
		r.drain(ctx, 3*time.Second)
		return d, ctx.Err()
	}
	for n := 1; n <= r.cfg.Warmup; n++ {
		if _, err := round(n, fmt.Sprintf("warm-up %d/%d", n, r.cfg.Warmup)); err != nil {
			return err
		}
	}
	w, err := r.startWindow()
	if err != nil {
		return err
	}
	var publishTime time.Duration
	for k := 1; k <= r.cfg.Messages; k++ {
		d, err := round(r.cfg.Warmup+k, fmt.Sprintf("round %d/%d", k, r.cfg.Messages))
		if err != nil {
			return err
		}
		publishTime += d
	}
	w.end()
	r.res.PublishSeconds = publishTime.Seconds()
	// Taking turns, the subscribers stay until this bench's next turn, so
	// that closing them does not fall in the other bench's last round.
	if r.cfg.RoundEvery > 0 {
		return r.awaitTurn(ctx, r.cfg.Warmup+r.cfg.Messages+1, "done")
	}
	return nil
}

// awaitTurn waits, with --round-every, until round n's turn:
// StartAfter + RoundOffset + (n-1) x RoundEvery after the run began.
func (r *runner) awaitTurn(ctx context.Context, n int, phase string) error {
	if r.cfg.RoundEvery == 0 {
		return nil
	}
	at := r.res.Started.Add(r.cfg.StartAfter + r.cfg.RoundOffset + time.Duration(n-1)*r.cfg.RoundEvery)
	d := time.Until(at)
	if d <= 0 {
		return nil
	}
	r.prog.set(phase+": waiting for its turn", nil)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (r *runner) burst(ctx context.Context) error {
	pad := strings.Repeat("x", r.cfg.Size)
	w, err := r.startWindow()
	if err != nil {
		return err
	}
	r.prog.set("publishing the burst", func() float64 {
		return float64(sum(r.publishedSnapshot())) / float64(r.cfg.Messages*len(r.topics))
	})
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(r.topics))
	sem := make(chan struct{}, r.cfg.Publishers)
	for i := range r.topics {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			for range r.cfg.Messages {
				if err := r.publishOne(ctx, i, pad); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	r.setPublishRate(time.Since(t0))
	r.drain(ctx, 10*time.Second)
	w.end()
	return errors.Join(errs...)
}

func (r *runner) setPublishRate(d time.Duration) {
	r.res.PublishSeconds = d.Seconds()
	r.res.PublishedPerSec = math.Round(float64(sum(r.publishedSnapshot())) / d.Seconds())
}

func (r *runner) throughput(ctx context.Context) error {
	cfg := r.cfg
	pad := strings.Repeat("x", cfg.Size)
	r.res.Publishers, r.res.Rate, r.res.Messages = cfg.Publishers, cfg.Rate, cfg.Messages
	w, err := r.startWindow()
	if err != nil {
		return err
	}
	start := time.Now()
	end := start.Add(cfg.Duration)
	r.prog.set("publishing", func() float64 { return float64(time.Since(start)) / float64(cfg.Duration) })
	pctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	var sent atomic.Int64
	var wg sync.WaitGroup
	for p := range cfg.Publishers {
		wg.Go(func() {
			var mine []int
			for i := p; i < len(r.topics); i += cfg.Publishers {
				mine = append(mine, i)
			}
			var every time.Duration
			if cfg.Rate > 0 {
				every = time.Duration(float64(time.Second) * float64(cfg.Publishers) / cfg.Rate)
			}
			next := start.Add(every * time.Duration(p) / time.Duration(cfg.Publishers))
			for k := 0; ; k++ {
				if cfg.Messages > 0 && sent.Add(1) > int64(cfg.Messages) {
					return
				}
				if every > 0 {
					if d := time.Until(next); d > 0 {
						select {
						case <-pctx.Done():
							return
						case <-time.After(d):
						}
					}
					next = next.Add(every)
				}
				if pctx.Err() != nil {
					return
				}
				// The run's ctx, not pctx: a publish under way when the
				// time is up completes, so that it is not counted lost.
				if err := r.publishOne(ctx, mine[k%len(mine)], pad); err != nil {
					select { // do not spin on a failing server
					case <-pctx.Done():
						return
					case <-time.After(100 * time.Millisecond):
					}
				}
			}
		})
	}
	wg.Wait()
	r.setPublishRate(time.Since(start))
	r.drain(ctx, 5*time.Second)
	w.end()
	return nil
}
