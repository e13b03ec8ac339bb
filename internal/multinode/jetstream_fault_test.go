package multinode

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The fault tests: three longpoll nodes behind the round-robin proxy (so
// every poll and publish hops to the next node) on a replicated store,
// publishers that retry each message with its id until it is
// acknowledged, subscribers that count what they get, and faults injected
// with SIGKILL at set points of the publishing. The same scenario runs on
// JetStream, where any loss fails the test, and on Redis Cluster, where
// loss is counted and reported.

// faultPublisher publishes data i = 1..n to one topic, one message per
// request, each retried with the same id until it is acknowledged, and
// waits interval after each acknowledgement, so that the faults fall
// while messages flow.
type faultPublisher struct {
	topic    string
	interval time.Duration
	acked    int            // messages acknowledged, 1..acked
	attempts int            // requests sent
	refused  map[string]int // requests not acknowledged, by status ("error" when no reply)
	ackedAt  []time.Time    // when each message was acknowledged
}

func (p *faultPublisher) run(ctx context.Context, hc *http.Client, base string, n int, published *atomic.Int64) error {
	p.refused = map[string]int{}
	for i := 1; i <= n; i++ {
		for {
			p.attempts++
			status, err := publish(ctx, hc, base, p.topic, i, 1)
			if err == nil && status == http.StatusOK {
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("publisher of %s: gave up at i=%d: %v", p.topic, i, ctx.Err())
			}
			if err != nil {
				p.refused["error"]++
			} else {
				p.refused[strconv.Itoa(status)]++
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
		p.acked = i
		p.ackedAt = append(p.ackedAt, time.Now())
		published.Add(1)
		select {
		case <-ctx.Done():
		case <-time.After(p.interval):
		}
	}
	return nil
}

// topicCount is what one subscriber got of one topic.
type topicCount struct {
	got        map[int]int // data index i -> times received
	lastI      int
	lastSeq    uint64
	inOrder    int // messages with i = the previous i + 1 and a greater seq
	duplicates int // an i received again
	reordered  int // an i lower than one received before, received the first time
	skips      int // an i beyond the previous i + 1 (what lies between is late or lost)
	headBack   int // a seq not above the previous one, without a reset gap before it
	resets     int // reset gaps
	otherGaps  int // gaps of another reason
	foreign    int // data that no publisher sent (i out of range)
	// announced holds the i skipped right after a gap: if never
	// delivered, their loss was told to the client.
	announced map[int]bool
}

// faultSubscriber polls its topics through the proxy from the earliest
// message, counting each message against what came before it. It stops
// when it has the last message of every topic, or when its polls have
// been answered for quiet without anything new since publishing ended
// (done was closed): a subscriber whose polls are refused keeps trying
// until the context ends, since unavailability is not loss.
type faultSubscriber struct {
	topics  []string
	count   map[string]*topicCount
	polls   int
	refused map[string]int
	stalled bool // stopped without the last message of every topic
	cursor  string
	// empty and refusedSince count the replies without a message and the
	// polls refused since the last message.
	empty, refusedSince int
	lastRefusal         string // the last refused poll: status, time taken and body
	lastMessage         time.Time
	lastRefused         time.Time
	stoppedAt           time.Time
	// longestWait is the longest time between two messages (or from the
	// start to the first), and waitEnd when it ended.
	longestWait time.Duration
	waitEnd     time.Time
}

func (s *faultSubscriber) run(ctx context.Context, hc *http.Client, base string, want int, done <-chan struct{}, quiet time.Duration) {
	s.count = map[string]*topicCount{}
	s.refused = map[string]int{}
	for _, t := range s.topics {
		s.count[t] = &topicCount{got: map[int]int{}, announced: map[int]bool{}}
	}
	afterReset := map[string]bool{}
	afterGap := map[string]bool{}
	cursor := ""
	s.lastMessage = time.Now()
	var doneAt time.Time
	for {
		complete := true
		for _, c := range s.count {
			complete = complete && c.got[want] > 0
		}
		if complete {
			return
		}
		if doneAt.IsZero() && isClosed(done) {
			doneAt = time.Now()
		}
		if !doneAt.IsZero() && time.Since(doneAt) > quiet && time.Since(s.lastMessage) > quiet && time.Since(s.lastRefused) > quiet {
			s.stalled, s.stoppedAt = true, time.Now()
			return
		}
		if ctx.Err() != nil {
			s.stalled, s.stoppedAt = true, time.Now()
			return
		}
		s.polls++
		sent := time.Now()
		r, status, body, err := pollBody(ctx, hc, base, s.topics, cursor, 2*time.Second)
		if err != nil || status != http.StatusOK {
			if err != nil {
				s.refused["error"]++
			} else {
				s.refused[strconv.Itoa(status)]++
			}
			s.refusedSince++
			s.lastRefused = time.Now()
			s.lastRefusal = fmt.Sprintf("%d after %v: %v %.200s", status, time.Since(sent).Round(time.Millisecond), err, body)
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
			continue
		}
		for _, g := range r.Gaps {
			c := s.count[g.Topic]
			if c == nil {
				continue
			}
			afterGap[g.Topic] = true
			if g.Reason == "reset" {
				c.resets++
				afterReset[g.Topic] = true
			} else {
				c.otherGaps++
			}
		}
		if len(r.Messages) == 0 {
			s.empty++
		} else {
			s.empty, s.refusedSince = 0, 0
		}
		for _, m := range r.Messages {
			c := s.count[m.Topic]
			i, err := dataIndex(m)
			if c == nil || err != nil || i < 1 || i > want {
				if c != nil {
					c.foreign++
				}
				continue
			}
			if w := time.Since(s.lastMessage); w > s.longestWait {
				s.longestWait, s.waitEnd = w, time.Now()
			}
			s.lastMessage = time.Now()
			switch {
			case c.got[i] > 0:
				c.duplicates++
			case i < c.lastI:
				c.reordered++
			case i > c.lastI+1:
				c.skips++
				for k := c.lastI + 1; k < i && afterGap[m.Topic]; k++ {
					c.announced[k] = true
				}
			}
			if m.Seq <= c.lastSeq && !afterReset[m.Topic] {
				c.headBack++
			}
			if i == c.lastI+1 && m.Seq > c.lastSeq && c.got[i] == 0 {
				c.inOrder++
			}
			afterReset[m.Topic], afterGap[m.Topic] = false, false
			c.got[i]++
			c.lastI, c.lastSeq = i, m.Seq
		}
		cursor = r.Cursor
		s.cursor = cursor
	}
}

// pollBody is poll that also returns the body of a reply that is not 200.
func pollBody(ctx context.Context, c *http.Client, base string, topics []string, cursor string, timeout time.Duration) (pollReply, int, []byte, error) {
	q := url.Values{"topic": topics, "since": {"earliest"}, "timeout": {timeout.String()}, "limit": {"200"}}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/poll?"+q.Encode(), nil)
	if err != nil {
		return pollReply{}, 0, nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return pollReply{}, 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return pollReply{}, resp.StatusCode, body, err
	}
	var r pollReply
	if err := json.Unmarshal(body, &r); err != nil {
		return pollReply{}, resp.StatusCode, body, fmt.Errorf("poll reply %q: %w", body, err)
	}
	return r, resp.StatusCode, nil, nil
}

// faultScenario is one run of the load with its faults.
type faultScenario struct {
	topics, perTopic, subscribers int
	nodes                         []*node
	store                         string        // the nodes' --store
	nodeArgs                      []string      // more flags of longpoll serve
	interval                      time.Duration // each publisher's pause after an acknowledgement
	faults                        []fault
	timeout                       time.Duration
}

// fault is done once at of the messages are acknowledged.
type fault struct {
	at   float64
	name string
	do   func(t *testing.T, sc *faultScenario)
}

// faultReport is what a run counted.
type faultReport struct {
	acked, attempts        int
	pubRefused, subRefused map[string]int
	polls                  int
	delivered, inOrder     int
	lost                   int // acknowledged (sub, topic, i) never delivered
	lostAnnounced          int // of which the subscriber was told by a gap
	// lostMessages counts the acknowledged (topic, i) that some
	// subscriber of the topic missed, and lostToAll those none got.
	lostMessages, lostToAll int
	duplicates, reordered   int
	skips, headBack         int
	resets, otherGaps       int
	foreign, stalled        int
	lostByTopic             map[string]int
	elapsed                 time.Duration
	pauses                  []string // the longest times without an acknowledgement
	longestWait             string   // the longest a subscriber went without a message
	faults                  []string // each fault, when it came and how long it took
}

func (r *faultReport) String() string {
	return fmt.Sprintf("acknowledged %d publishes in %d requests (not acknowledged: %s); polls %d (not answered 200: %s); "+
		"delivered %d, in order %d, lost %d (%s; told by a gap %d, silently %d; %d messages missed by a subscriber, %d by all), duplicates %d, reordered %d, skips %d, head back %d, reset gaps %d, other gaps %d, foreign %d, stalled subscribers %d; "+
		"faults: %s; longest pauses in acknowledgements: %s; longest wait of a subscriber between messages: %s; in %v",
		r.acked, r.attempts, countsString(r.pubRefused), r.polls, countsString(r.subRefused),
		r.delivered, r.inOrder, r.lost, countsString(r.lostByTopic), r.lostAnnounced, r.lost-r.lostAnnounced, r.lostMessages, r.lostToAll, r.duplicates, r.reordered, r.skips, r.headBack, r.resets, r.otherGaps, r.foreign, r.stalled,
		strings.Join(r.faults, ", "), strings.Join(r.pauses, ", "), r.longestWait, r.elapsed.Round(time.Millisecond))
}

func countsString(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s:%d", k, m[k])
	}
	return b.String()
}

// startNodes starts the scenario's three longpoll nodes.
func (sc *faultScenario) startNodes(t *testing.T) []string {
	t.Helper()
	var addrs []string
	for range 3 {
		n := startNode(t, sc.store, sc.nodeArgs...)
		sc.nodes = append(sc.nodes, n)
		addrs = append(addrs, n.addr)
	}
	return addrs
}

// killNode kills node k with SIGKILL and starts it again on the same
// address, so that the proxy finds it there.
func (sc *faultScenario) killNode(t *testing.T, k int) {
	t.Helper()
	old := sc.nodes[k]
	old.kill()
	time.Sleep(200 * time.Millisecond) // down a moment: requests to it fail over in the proxy
	sc.nodes[k] = startNode(t, sc.store, append(append([]string(nil), sc.nodeArgs...), "--addr", old.addr)...)
}

// run starts the scenario's nodes, the load and the faults, and returns
// the counts once every subscriber has stopped.
func (sc *faultScenario) run(t *testing.T) *faultReport {
	t.Helper()
	px := startProxy(t, sc.startNodes(t)...)
	hc := newHTTPClient()
	defer hc.CloseIdleConnections()

	ctx, cancel := context.WithTimeout(t.Context(), sc.timeout)
	defer cancel()
	start := time.Now()
	var published atomic.Int64
	done := make(chan struct{})
	var pubWG, subWG sync.WaitGroup
	pubErrs := make([]error, sc.topics)
	pubs := make([]*faultPublisher, sc.topics)
	for k := range sc.topics {
		pubs[k] = &faultPublisher{topic: topicName(k), interval: sc.interval}
		pubWG.Go(func() { pubErrs[k] = pubs[k].run(ctx, hc, px.url, sc.perTopic, &published) })
	}
	subs := make([]*faultSubscriber, sc.subscribers)
	for s := range sc.subscribers {
		subs[s] = &faultSubscriber{topics: []string{topicName(s % sc.topics), topicName((s + 1) % sc.topics)}}
		subWG.Go(func() { subs[s].run(ctx, hc, px.url, sc.perTopic, done, 10*time.Second) })
	}

	go func() { pubWG.Wait(); close(done) }()

	rep := &faultReport{pubRefused: map[string]int{}, subRefused: map[string]int{}, lostByTopic: map[string]int{}}
	total := int64(sc.topics * sc.perTopic)
	for _, f := range sc.faults {
		reached := func() bool { return published.Load() >= int64(f.at*float64(total)) }
		if !waitFor(time.Until(deadlineOf(ctx)), func() bool { return reached() || isClosed(done) }) || !reached() {
			t.Errorf("fault %q not done: only %d of %d messages acknowledged", f.name, published.Load(), total)
			break
		}
		at := time.Now()
		n := published.Load()
		f.do(t, sc)
		rep.faults = append(rep.faults, fmt.Sprintf("%s at %v, %d msgs (took %v)",
			f.name, at.Sub(start).Round(100*time.Millisecond), n, time.Since(at).Round(100*time.Millisecond)))
	}
	<-done
	subWG.Wait()
	rep.elapsed = time.Since(start)
	for _, err := range pubErrs {
		if err != nil {
			t.Error(err)
		}
	}

	rep.pauses = longestPauses(start, pubs, 4)
	var longest *faultSubscriber
	for _, s := range subs {
		if longest == nil || s.longestWait > longest.longestWait {
			longest = s
		}
	}
	if longest != nil {
		rep.longestWait = fmt.Sprintf("%v, ending at %v", longest.longestWait.Round(10*time.Millisecond), longest.waitEnd.Sub(start).Round(100*time.Millisecond))
	}
	acked := map[string]int{}
	for _, p := range pubs {
		acked[p.topic] = p.acked
		rep.acked += p.acked
		rep.attempts += p.attempts
		for k, v := range p.refused {
			rep.pubRefused[k] += v
		}
	}
	for _, s := range subs {
		rep.polls += s.polls
		for k, v := range s.refused {
			rep.subRefused[k] += v
		}
		if s.stalled {
			rep.stalled++
		}
		for topic, c := range s.count {
			for i := 1; i <= acked[topic]; i++ {
				if c.got[i] == 0 {
					rep.lost++
					if c.announced[i] {
						rep.lostAnnounced++
					}
					rep.lostByTopic[topic]++
				}
			}
			for _, v := range c.got {
				rep.delivered += v
			}
			rep.inOrder += c.inOrder
			rep.duplicates += c.duplicates
			rep.reordered += c.reordered
			rep.skips += c.skips
			rep.headBack += c.headBack
			rep.resets += c.resets
			rep.otherGaps += c.otherGaps
			rep.foreign += c.foreign
			// The accounting holds whatever the store did: every delivery
			// is the first of its i or a duplicate, and an i is either
			// delivered or lost.
			distinct := 0
			for i, v := range c.got {
				if v > 0 && i >= 1 && i <= sc.perTopic {
					distinct++
				}
			}
			if sum := distinct + c.duplicates; sum != sumValues(c.got) {
				t.Errorf("%s: %d distinct + %d duplicates != %d delivered", topic, distinct, c.duplicates, sumValues(c.got))
			}
			if c.inOrder > distinct {
				t.Errorf("%s: %d in order > %d distinct", topic, c.inOrder, distinct)
			}
		}
	}
	for _, p := range pubs {
		for i := 1; i <= p.acked; i++ {
			some, all := false, true
			for _, s := range subs {
				if c := s.count[p.topic]; c != nil {
					got := c.got[i] > 0
					some, all = some || !got, all && !got
				}
			}
			if some {
				rep.lostMessages++
			}
			if all {
				rep.lostToAll++
			}
		}
	}
	for _, s := range subs {
		if !s.stalled {
			continue
		}
		// What each node answers the subscriber now tells a node that
		// does not see the messages from one that is not asked.
		for _, n := range sc.nodes {
			r, status, err := poll(t.Context(), hc, "http://"+n.addr, s.topics, s.cursor, time.Second)
			var last []string
			for _, topic := range s.topics {
				last = append(last, fmt.Sprintf("%s i=%d seq=%d", topic, s.count[topic].lastI, s.count[topic].lastSeq))
			}
			t.Logf("a stalled subscriber (last got %s %v before it stopped, then %d replies without a message, %d polls refused, the last %s), its poll to node %s now: status %d, error %v, %d messages, gaps %v, timeout %t",
				strings.Join(last, ", "), s.stoppedAt.Sub(s.lastMessage).Round(time.Millisecond), s.empty, s.refusedSince, s.lastRefusal,
				n.addr, status, err, len(r.Messages), r.Gaps, r.Timeout)
		}
		break
	}
	return rep
}

// longestPauses describes the n longest times between two consecutive
// acknowledgements of any publisher, or from the start to the first, as
// "length at start-offset", longest first.
func longestPauses(start time.Time, pubs []*faultPublisher, n int) []string {
	times := []time.Time{start}
	for _, p := range pubs {
		times = append(times, p.ackedAt...)
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	type pause struct{ at, d time.Duration }
	var ps []pause
	for i := 1; i < len(times); i++ {
		ps = append(ps, pause{times[i-1].Sub(start), times[i].Sub(times[i-1])})
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].d > ps[j].d })
	var out []string
	for _, p := range ps[:min(n, len(ps))] {
		out = append(out, fmt.Sprintf("%v at %v", p.d.Round(10*time.Millisecond), p.at.Round(100*time.Millisecond)))
	}
	return out
}

func orNone(a []string) string {
	if len(a) == 0 {
		return "none"
	}
	return strings.Join(a, ", ")
}

func sumValues(m map[int]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func deadlineOf(ctx context.Context) time.Time {
	d, ok := ctx.Deadline()
	if !ok {
		return time.Now().Add(time.Minute)
	}
	return d
}

// Three longpoll nodes on a three-server JetStream cluster (replicas 3;
// by default two Debian nats-servers and one built from go.mod, see
// LONGPOLL_NATS_SERVERS), 10,000 messages (2,000 with -short) published
// one per request on 10 topics through a round-robin proxy by publishers
// that retry each until it is acknowledged, 30 subscribers of two topics
// each whose polls hop between the nodes. Meanwhile the stream's leader
// is SIGKILLed and restarted, and so is a longpoll node; without -short
// also a follower and the leader again. Every acknowledged message
// reaches every subscriber of its topic exactly once and in order; the
// log reports what was refused meanwhile and for how long.
func TestJetStreamFaults(t *testing.T) {
	if raceEnabled {
		t.Skip("SKIP: the fault test runs without the race detector (go test -short ./internal/multinode/ in CI)")
	}
	bins := requireNATS(t)
	cl := startNATSCluster(t, bins)
	const stream = "LPFAULT"
	sc := &faultScenario{
		topics: 10, perTopic: 1000, subscribers: 30,
		store:    "nats://" + cl.URLs() + "?replicas=3&stream=" + stream + "&prefix=lpfault",
		nodeArgs: []string{"--retention-messages", "20000", "--max-hold", "10s"},
		interval: 40 * time.Millisecond,
		timeout:  240 * time.Second,
	}
	var leaderKills, followerKills []string
	killLeader := func(t *testing.T, sc *faultScenario) {
		l, err := cl.waitStreamLeader(stream, 20*time.Second)
		if err != nil {
			t.Error(err)
			return
		}
		leaderKills = append(leaderKills, fmt.Sprintf("%s=%s (leaders: %s)", l.name, l.version, cl.leaders()))
		l.kill()
		time.Sleep(time.Second)
		l.restart()
		if err := cl.waitHealthy(30 * time.Second); err != nil {
			t.Error(err)
		}
	}
	killFollower := func(t *testing.T, sc *faultScenario) {
		leader, err := cl.waitStreamLeader(stream, 20*time.Second)
		if err != nil {
			t.Error(err)
			return
		}
		for _, s := range cl.Servers {
			if s != leader {
				followerKills = append(followerKills, fmt.Sprintf("%s=%s (leaders: %s)", s.name, s.version, cl.leaders()))
				s.kill()
				time.Sleep(time.Second)
				s.restart()
				break
			}
		}
		if err := cl.waitHealthy(30 * time.Second); err != nil {
			t.Error(err)
		}
	}
	killNode := func(t *testing.T, sc *faultScenario) { sc.killNode(t, 1) }
	sc.faults = []fault{
		{0.15, "stream leader SIGKILL+restart", killLeader},
		{0.35, "longpoll node SIGKILL+restart", killNode},
		{0.55, "stream follower SIGKILL+restart", killFollower},
		{0.75, "stream leader SIGKILL+restart", killLeader},
	}
	if testing.Short() {
		sc.perTopic, sc.interval, sc.timeout = 200, 60*time.Millisecond, 90*time.Second
		sc.faults = []fault{
			{0.2, "stream leader SIGKILL+restart", killLeader},
			{0.6, "longpoll node SIGKILL+restart", killNode},
		}
	}
	rep := sc.run(t)
	if err := cl.waitHealthy(30 * time.Second); err != nil {
		t.Error(err)
	}
	var info string
	if !waitFor(10*time.Second, func() bool { var current bool; info, current = cl.streamInfo(stream); return current }) {
		t.Errorf("stream %s after the run: %s", stream, info)
	}
	t.Logf("stream %s after the run: %s", stream, info)
	t.Logf("JetStream (%s, replicas 3; leaders killed: %s; followers killed: %s): %s",
		cl.Versions(), orNone(leaderKills), orNone(followerKills), rep)
	want := sc.topics * sc.perTopic
	if rep.acked != want {
		t.Errorf("%d of %d messages acknowledged", rep.acked, want)
	}
	if rep.stalled != 0 {
		t.Errorf("%d subscribers stopped without every message (see above what the nodes answer one now)", rep.stalled)
	}
	if rep.lost != 0 || rep.duplicates != 0 || rep.reordered != 0 || rep.skips != 0 || rep.headBack != 0 ||
		rep.resets != 0 || rep.otherGaps != 0 || rep.foreign != 0 {
		t.Errorf("JetStream lost or disordered acknowledged messages: %s", rep)
	}
	if wantDelivered := sc.subscribers * 2 * sc.perTopic; rep.inOrder != wantDelivered {
		t.Errorf("%d messages delivered in order, want %d", rep.inOrder, wantDelivered)
	}
}
