package bench

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
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
	// until all subscribers received each round.
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
)

// Config is one run of the bench. Zero numbers take the scenario's
// default (see Check).
type Config struct {
	Scenario    string
	Protocol    string // ProtocolLongpoll or ProtocolNchan
	Server      string // base URL
	Subscribers int    // subscriber connections in all
	Topics      int
	Publishers  int     // throughput: concurrent publishers
	Messages    int     // fanout: rounds; burst: messages per topic; throughput: cap (0 none)
	Rate        float64 // throughput: messages per second in all, 0 as fast as they go
	Size        int     // bytes of padding in each message
	Duration    time.Duration
	Timeout     time.Duration // bound on the whole run
	PollTimeout time.Duration // hold each subscriber asks for
	Workers     int           // worker processes
	SourceAddrs int           // loopback source addresses 127.0.0.1, .2, ...
	ServerPID   int           // server to read RSS and CPU time from
	Spawn       string        // command that starts the server
	Progress    io.Writer     // where the progress bar goes; nil: nowhere
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
	if u, err := url.Parse(c.Server); err != nil || u.Scheme != "http" || u.Host == "" {
		bad("--server must be an http:// URL, not %q", c.Server)
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
		bad("--timeout must be positive and at most %v", MaxTimeout)
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
		bad("--duration must be positive and shorter than --timeout (%v)", c.Timeout)
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
	if c.SourceAddrs == 0 && loopbackServer(c.Server) {
		c.SourceAddrs = (c.Subscribers + ConnsPerSourceAddr - 1) / ConnsPerSourceAddr
	}
	if c.SourceAddrs < 0 || c.SourceAddrs > 254 {
		bad("--source-addrs must be 0 to 254")
	}
	if c.SourceAddrs > 0 && !loopbackServer(c.Server) {
		bad("--source-addrs needs a loopback --server (127.0.0.1 or localhost)")
	}
	if c.ServerPID < 0 {
		bad("--server-pid must be a process id")
	}
	if c.ServerPID != 0 && c.Spawn != "" {
		bad("--server-pid and --spawn exclude each other")
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
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
