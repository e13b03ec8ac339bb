package bench

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Scenarios.
const (
	// Capacity holds Subscribers idle polls and reports the server's
	// resident memory per held poll.
	Capacity = "capacity"
	// Fanout publishes Messages rounds of one message per topic to
	// Subscribers held on Topics, each round once every subscriber is
	// held again, and reports publish-to-receive latency and the time
	// until all subscribers received each round. Warmup rounds before
	// them are not measured.
	Fanout = "fanout"
	// Throughput has Publishers publish over Topics, each with
	// Subscribers/Topics subscribers, at Rate for Duration, and reports
	// rates, latency and server CPU time per delivered message.
	Throughput = "throughput"
	// Burst publishes Messages numbered messages back to back to each
	// topic while its subscribers re-poll, and counts losses, duplicates
	// and reordering.
	Burst = "burst"
)

// Scenarios lists every scenario.
var Scenarios = []string{Capacity, Fanout, Throughput, Burst}

// Bounds on one run.
const (
	MaxSubscribers = 200_000
	MaxMessages    = 10_000_000
	MaxTimeout     = time.Hour
	// ConnsPerWorker is how many subscriber connections one worker
	// process holds when Workers is 0.
	ConnsPerWorker = 10_000
	// ConnsPerSourceAddr is how many connections one loopback source
	// address carries when SourceAddrs is 0: well within the ~28,000
	// ephemeral ports of one address, with room left for the ports that
	// earlier runs' connections keep in TIME_WAIT for a minute.
	ConnsPerSourceAddr = 5_000
	// MaxServers bounds the nodes of one cluster a run measures.
	MaxServers = 64
)

// Config is one run of the bench. Zero numbers take the scenario's
// default (see Check).
type Config struct {
	Scenario string
	Protocol string // ProtocolLongpoll or ProtocolNchan
	// Transport is how subscribers receive: TransportPoll ("" too) or
	// TransportSSE.
	Transport string
	// Server is the base URL of the server, or of several nodes of one
	// cluster, comma-separated: subscriber i polls node (i / topics) mod k
	// (every topic has subscribers on every node), every
	// publish goes to the first, and the held count is summed over all.
	Server      string
	Subscribers int // subscriber connections in all
	Topics      int
	Publishers  int     // throughput: concurrent publishers
	Messages    int     // fanout: rounds; burst: messages per topic; throughput: cap (0 none)
	Warmup      int     // fanout: unmeasured rounds before the Messages rounds
	Rate        float64 // throughput: messages per second in all, 0 as fast as they go
	Size        int     // bytes of padding in each message
	Duration    time.Duration
	Timeout     time.Duration // bound on the whole run
	// StartAfter delays the scenario until this long after the run began
	// (and every subscriber is held), so that benches started together
	// publish together.
	StartAfter time.Duration
	// RoundEvery, in a fanout, publishes round n (warm-ups counted, from
	// 1) no sooner than StartAfter+RoundOffset+(n-1)*RoundEvery after
	// the run began: two benches started together, with offsets half a
	// period apart, then take turns, so that two servers run side by side
	// without their rounds overlapping. After the last round, the
	// subscribers stay until the turn of the round after it.
	RoundEvery  time.Duration
	RoundOffset time.Duration
	// ReadFirst, in a fanout, has each subscriber that read a round's
	// message re-poll only once every subscriber of its worker process
	// has read it (or a second after): one core that plays thousands of
	// subscribers then reads each reply as it arrives, rather than
	// after the re-polls of those read before it, so that the time until
	// all received measures the server rather than the load.
	ReadFirst   bool
	PollTimeout time.Duration // hold each subscriber asks for
	Workers     int           // worker processes
	SourceAddrs int           // loopback source addresses 127.0.0.1, .2, ...
	// ServerPID is the pid of the server to read RSS and CPU time from,
	// or several comma-separated, the nodes' in the order of Server (at
	// most one per URL): their figures are summed.
	ServerPID string
	Spawn     string    // command that starts the server (one URL only)
	Progress  io.Writer // where the progress bar goes; nil: nowhere
	// Token, when set, is sent as a bearer token with the publishes and the
	// topic-info requests, and with every subscriber's polls unless
	// SubscriberToken is set.
	Token string
	// SubscriberToken, when set, returns the bearer token of subscriber i
	// (from 0) of the run, whose topics are all named "bench.<run>.<n>":
	// one identity per subscriber, so that a server's per-client limit on
	// held polls does not cap the run.
	SubscriberToken func(i int) (string, error)

	servers []string // Server split by Check
	pids    []int    // ServerPID split by Check
}

// Check fills in defaults and reports what is wrong with c.
func (c *Config) Check() error {
	var errs []string
	bad := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	switch c.Scenario {
	case Capacity, Fanout, Throughput, Burst:
	default:
		bad("--scenario must be one of %s, not %q", strings.Join(Scenarios, ", "), c.Scenario)
	}
	switch c.Protocol {
	case ProtocolLongpoll, ProtocolNchan:
	default:
		bad("--protocol must be longpoll or nchan, not %q", c.Protocol)
	}
	switch c.Transport {
	case "":
		c.Transport = TransportPoll
	case TransportPoll, TransportSSE:
	default:
		bad("--transport must be poll or sse, not %q", c.Transport)
	}
	if c.Transport == TransportSSE && c.ReadFirst {
		bad("--read-first is for polls: a stream does not re-poll")
	}
	c.servers = nil
	for s := range strings.SplitSeq(c.Server, ",") {
		s = strings.TrimSpace(s)
		u, err := url.Parse(s)
		if err != nil || u.Scheme != "http" || u.Host == "" {
			bad("--server must be an http:// URL, or several comma-separated, not %q", s)
			continue
		}
		if slices.ContainsFunc(c.servers, func(o string) bool { return sameServer(o, s) }) {
			bad("--server lists %s twice: its polls would be counted twice", s)
			continue
		}
		c.servers = append(c.servers, s)
	}
	if len(c.servers) > MaxServers {
		bad("--server must list at most %d URLs", MaxServers)
	}
	c.pids = nil
	if c.ServerPID != "" {
		for s := range strings.SplitSeq(c.ServerPID, ",") {
			pid, err := strconv.Atoi(strings.TrimSpace(s))
			switch {
			case err != nil || pid <= 0:
				bad("--server-pid must be a process id, or several comma-separated, not %q", s)
			case slices.Contains(c.pids, pid):
				bad("--server-pid lists %d twice: its figures would be counted twice", pid)
			default:
				c.pids = append(c.pids, pid)
			}
		}
	}
	if len(c.pids) > max(len(c.servers), 1) {
		bad("--server-pid lists %d pids for %d --server URL(s): give at most one per URL, in the same order", len(c.pids), len(c.servers))
	}
	if c.Subscribers == 0 {
		c.Subscribers = 1000
	}
	if c.Subscribers < 1 || c.Subscribers > MaxSubscribers {
		bad("--subscribers must be 1 to %d", MaxSubscribers)
	}
	if c.Topics == 0 {
		c.Topics = 1
		if c.Scenario == Throughput {
			c.Topics = max(c.Subscribers/10, 1)
		}
	}
	if c.Topics < 1 || c.Topics > c.Subscribers {
		bad("--topics must be 1 to --subscribers (%d)", c.Subscribers)
	}
	if c.Publishers == 0 {
		c.Publishers = min(c.Topics, 8)
	}
	if c.Publishers < 1 || c.Publishers > c.Topics || c.Publishers > 1000 {
		bad("--publishers must be 1 to min(--topics, 1000)")
	}
	if c.Messages == 0 {
		switch c.Scenario {
		case Fanout:
			c.Messages = 5
		case Burst:
			c.Messages = 500
		}
	}
	if c.Messages < 0 || c.Messages > MaxMessages {
		bad("--messages must be 0 to %d", MaxMessages)
	}
	if c.Warmup < 0 || c.Warmup > 100 {
		bad("--warmup must be 0 to 100")
	}
	if c.Scenario != Fanout {
		c.Warmup = 0
	}
	if c.Rate < 0 {
		bad("--rate must not be negative")
	}
	if c.Size < 0 || c.Size > 60_000 {
		bad("--size must be 0 to 60000 bytes")
	}
	if c.Timeout == 0 {
		c.Timeout = 2 * time.Minute
	}
	if c.Timeout < 0 || c.Timeout > MaxTimeout {
		bad("--run-timeout must be positive and at most %v", MaxTimeout)
	}
	if c.Duration == 0 {
		switch c.Scenario {
		case Capacity:
			c.Duration = 5 * time.Second
		case Throughput:
			c.Duration = 10 * time.Second
		}
	}
	if c.Duration < 0 || c.Duration >= c.Timeout {
		bad("--duration must be positive and shorter than --run-timeout (%v)", c.Timeout)
	}
	if c.StartAfter < 0 || c.StartAfter >= c.Timeout {
		bad("--start-after must be 0 or more and shorter than --run-timeout (%v)", c.Timeout)
	}
	if c.RoundEvery < 0 || c.RoundOffset < 0 {
		bad("--round-every and --round-offset must be 0 or more")
	}
	if c.RoundOffset > 0 && c.RoundEvery == 0 {
		bad("--round-offset needs --round-every")
	}
	if c.RoundEvery > 0 && c.Scenario != Fanout {
		bad("--round-every is for the fanout scenario")
	}
	if c.ReadFirst && c.Scenario != Fanout {
		bad("--read-first is for the fanout scenario")
	}
	if c.PollTimeout == 0 {
		c.PollTimeout = 50 * time.Second
	}
	if c.PollTimeout < 0 {
		bad("--poll-timeout must be positive")
	}
	if c.Workers == 0 {
		c.Workers = (c.Subscribers + ConnsPerWorker - 1) / ConnsPerWorker
	}
	if c.Workers < 1 || c.Workers > 64 || c.Workers > c.Subscribers {
		bad("--workers must be 1 to min(64, --subscribers)")
	}
	if c.SourceAddrs == 0 && loopbackServers(c.servers) {
		c.SourceAddrs = (c.Subscribers + ConnsPerSourceAddr - 1) / ConnsPerSourceAddr
	}
	if c.SourceAddrs < 0 || c.SourceAddrs > 254 {
		bad("--source-addrs must be 0 to 254")
	}
	if c.SourceAddrs > 0 && !loopbackServers(c.servers) {
		bad("--source-addrs needs every --server on loopback (127.0.0.1 or localhost)")
	}
	if c.ServerPID != "" && c.Spawn != "" {
		bad("--server-pid and --spawn exclude each other")
	}
	if k := len(c.servers); k > 1 {
		if c.Spawn != "" {
			bad("--spawn starts one server: with several --server URLs, start the nodes yourself and give their pids with --server-pid")
		}
		if c.Protocol == ProtocolNchan {
			bad("--protocol nchan takes one --server URL, not %d", k)
		}
		if c.Subscribers >= 1 && c.Subscribers < k {
			bad("--subscribers (%d) must be at least the number of --server URLs (%d), so that every node holds polls", c.Subscribers, k)
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// sameServer reports whether base URLs a and b name the same server.
func sameServer(a, b string) bool {
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	if err1 != nil || err2 != nil {
		return a == b
	}
	return strings.EqualFold(ua.Host, ub.Host) && strings.TrimSuffix(ua.Path, "/") == strings.TrimSuffix(ub.Path, "/")
}

// loopbackServers reports whether there are servers and all are on
// loopback.
func loopbackServers(servers []string) bool {
	return len(servers) > 0 && !slices.ContainsFunc(servers, func(s string) bool { return !loopbackServer(s) })
}

func loopbackServer(server string) bool {
	u, err := url.Parse(server)
	if err != nil {
		return false
	}
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback() && ip.To4() != nil
}

// sourceAddrs returns 127.0.0.1 to 127.0.0.n.
func sourceAddrs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("127.0.0.%d", i+1)
	}
	return out
}
