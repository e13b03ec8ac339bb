package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/longpoll/longpoll/internal/bench"
)

const benchDoc = `Measure a running server over HTTP, longpoll's own or Nchan (--protocol
nchan, see bench/nchan/nginx.conf), with one of four scenarios:

  capacity    hold --subscribers idle polls; report the server's RSS per
              held poll (needs --server-pid or --spawn)
  fanout      --messages rounds of one message to --subscribers on
              --topics; latency p50/p90/p99/max and the time until all
              received each round
  throughput  --publishers publish over --topics at --rate for --duration;
              published/s, delivered/s, latency and server CPU time per
              delivered message
  burst       --messages numbered messages back to back per topic while
              subscribers re-poll; counts losses, duplicates, reordering

Subscribers run in --workers worker processes (this binary again) and
connect from --source-addrs loopback addresses, so a run is not bounded by
one process's open-file limit or one address's ports. Every run ends within
--run-timeout. A progress bar goes to stderr, a table to stdout; --json-file
and --svg write the figures and a chart of the latency distribution.
(--timeout and --json are the old names of --run-timeout and --json-file:
they still work, with a warning, and go in the next version.)

Against a server under --auth jwt, --token (or --token-file, or
LONGPOLL_TOKEN) is sent by the publishes and by every subscriber: they are
then one client to the server, whose --max-held-per-client (100 by
default) caps the polls it holds. --secret-file FILE, the server's HS256
secret (as longpoll token --secret-file takes it), instead mints one token
per subscriber, subject bench-<n>, allowed to subscribe to bench.> (the
bench's topics are bench.<run>.<n>), and one for the publishes, subject
bench, allowed to publish and subscribe there; each is valid for the run's
--run-timeout and a minute more. The server's per-client rates still apply
to each identity: the publishes all come from one, so a throughput or burst
run wants the server's --rate-publish 0.

Several --server URLs, comma-separated, measure the nodes of one cluster
(longpoll serve processes sharing a Redis store): subscriber i polls URL
(i / topics) mod N, every publish goes to the first URL, so deliveries on the others
are wake-ups across nodes, and a poll counts as held when its node says
so. --server-pid takes the nodes' pids the same way; their RSS and CPU
time are summed.

Example, the server pinned to CPU 0 and the load to CPU 1:

  taskset -c 1 longpoll bench --scenario fanout --subscribers 10000 \
    --spawn 'taskset -c 0 longpoll serve --addr 127.0.0.1:8080 --log-level warn' \
    --server http://127.0.0.1:8080 --json-file fanout.json --svg fanout.svg`

func runBench(ctx context.Context, args []string, io IO) int {
	if bench.IsWorker() {
		return bench.Worker(ctx, io.Stdin, io.Stdout)
	}
	var c bench.Config
	var o benchOutput
	var ba benchAuth
	fs := newFlagSet("bench", "", io)
	benchFlags(fs, &c, &o)
	tokenFlags(fs, &ba.token, "read once, at the start")
	fs.StringVar(&ba.secretFile, "secret-file", "", "the server's HS256 secret: mint one token per subscriber (subject bench-<n>), so that --max-held-per-client does not cap the run (see below)")
	old := deprecatedBenchFlags(fs)
	flagsUsage := fs.Usage
	fs.Usage = func() {
		flagsUsage()
		fmt.Fprintf(io.Stderr, "\n%s\n", benchDoc)
	}
	hidden, getenv := tokenEnv(func(k string) (string, bool) {
		// LONGPOLL_TIMEOUT is subscribe's poll hold, not a bench's bound.
		if k == envName("timeout") || k == envName("json") {
			return "", false
		}
		return os.LookupEnv(k)
	})
	pos, code, ok := parseArgs(fs, args, hidden, io)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(io, "bench", "unexpected argument %q", pos[0])
	}
	if err := old.apply(fs, &c, &o, io); err != nil {
		return usageError(io, "bench", "%v", err)
	}
	if err := ba.token.fromEnv(fs, getenv); err != nil {
		return usageError(io, "bench", "%v", err)
	}
	if err := c.Check(); err != nil {
		return usageError(io, "bench", "%v", err)
	}
	if err := ba.configure(&c); err != nil {
		return usageError(io, "bench", "%v", err)
	}
	var others []*bench.Result
	if o.compare != "" {
		if o.svg == "" {
			return usageError(io, "bench", "--compare draws into --svg: give both")
		}
		r, err := bench.ReadJSONFile(o.compare)
		if err != nil {
			return usageError(io, "bench", "--compare: %v", err)
		}
		others = append(others, r)
	}
	if !o.quiet {
		c.Progress = io.Stderr
	}
	res, err := bench.Run(ctx, c)
	if res != nil {
		if werr := o.write(res, others, io); werr != nil {
			fmt.Fprintf(io.Stderr, "longpoll bench: %v\n", werr)
			return ExitError
		}
	}
	if err != nil {
		fmt.Fprintf(io.Stderr, "longpoll bench: %v\n", err)
		return ExitError
	}
	return ExitOK
}

// benchOutput is where longpoll bench puts its result besides the table
// on stdout, and whether it shows its progress.
type benchOutput struct {
	json, svg, compare string
	quiet              bool
}

func benchFlags(fs *flag.FlagSet, c *bench.Config, o *benchOutput) {
	fs.StringVar(&c.Scenario, "scenario", bench.Fanout, "capacity, fanout, throughput or burst")
	fs.StringVar(&c.Protocol, "protocol", bench.ProtocolLongpoll, "longpoll or nchan")
	fs.StringVar(&c.Transport, "transport", bench.TransportPoll, "how subscribers receive: poll (long polls) or sse (one stream of server-sent events each: GET /v1/stream, or Nchan's EventSource subscriber at /es/<channel>)")
	fs.StringVar(&c.Server, "server", "http://127.0.0.1:8080", "base URL of the server; several comma-separated are nodes of one cluster: subscriber i polls URL (i / topics) mod N, every publish goes to the first, held polls are summed over all")
	fs.IntVar(&c.Subscribers, "subscribers", 1000, "subscriber connections in all")
	fs.IntVar(&c.Topics, "topics", 0, "topics the subscribers spread over (0: 1; throughput: subscribers/10)")
	fs.IntVar(&c.Publishers, "publishers", 0, "concurrent publishers (0: min(topics, 8))")
	fs.IntVar(&c.Messages, "messages", 0, "fanout: rounds (0: 5); burst: messages per topic (0: 500); throughput: most messages (0: no cap)")
	fs.IntVar(&c.Warmup, "warmup", 1, "fanout: rounds before the measured ones, not measured: the first round's replies find the load's buffers and stacks cold")
	fs.Float64Var(&c.Rate, "rate", 0, "throughput: messages per second in all (0: as fast as replies come)")
	fs.IntVar(&c.Size, "size", 0, "bytes of padding in each message")
	fs.DurationVar(&c.Duration, "duration", 0, "throughput: publishing time (0: 10s); capacity: holding time (0: 5s)")
	fs.DurationVar(&c.Timeout, "run-timeout", 0, "bound on the whole run (0: 2m)")
	fs.DurationVar(&c.StartAfter, "start-after", 0, "begin the scenario this long after the run began, once every subscriber is held (0: at once), so that benches started together publish together")
	fs.DurationVar(&c.RoundEvery, "round-every", 0, "fanout: publish round n no sooner than --start-after + --round-offset + (n-1) x this after the run began (0: as soon as every subscriber is held again), so that two benches take turns; the subscribers stay until the turn after the last round")
	fs.DurationVar(&c.RoundOffset, "round-offset", 0, "fanout: where in each --round-every period this bench's rounds begin")
	fs.BoolVar(&c.ReadFirst, "read-first", false, "fanout: each worker's subscribers re-poll once all of them have read the round's message (or 1 s after their own), so that re-polls do not delay the reading of other subscribers' replies")
	fs.DurationVar(&c.PollTimeout, "poll-timeout", 0, "hold each poll asks for (0: 50s; Nchan's is set in its config)")
	fs.IntVar(&c.Workers, "workers", 0, fmt.Sprintf("worker processes (0: one per %d subscribers)", bench.ConnsPerWorker))
	fs.IntVar(&c.SourceAddrs, "source-addrs", 0, fmt.Sprintf("loopback source addresses 127.0.0.1 to .N (0: one per %d subscribers on a loopback server, else none)", bench.ConnsPerSourceAddr))
	fs.StringVar(&c.ServerPID, "server-pid", "", "pid of the server, to read its RSS and CPU time from /proc; with several --server URLs, their pids comma-separated in the same order (at most one per URL), summed")
	fs.StringVar(&c.Spawn, "spawn", "", `command (run with /bin/sh -c) that starts the server; the bench measures it and stops it; the word "longpoll" names this binary; one --server URL only`)
	fs.StringVar(&o.json, "json-file", "", "file to write the result to, as JSON")
	fs.StringVar(&o.svg, "svg", "", "file to write a chart of the latency distribution to, as SVG")
	fs.StringVar(&o.compare, "compare", "", "a --json-file of an earlier run to draw beside this one in --svg")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress bar")
}

// write prints res as a table, then writes it to --json-file and draws it, beside
// others, into --svg.
func (o *benchOutput) write(res *bench.Result, others []*bench.Result, io IO) error {
	bench.WriteTable(io.Stdout, res)
	if o.json != "" {
		if err := bench.WriteJSONFile(o.json, res); err != nil {
			return err
		}
	}
	if o.svg != "" {
		return bench.WriteSVGFile(o.svg, res, others...)
	}
	return nil
}

// deprecatedBench holds the bench's old flag names, kept for one version:
// --timeout bounded a run here but is a poll's hold in subscribe, and
// LONGPOLL_TIMEOUT set both; --json became --json-file, a file like --svg.
type deprecatedBench struct {
	timeout time.Duration
	json    string
}

func deprecatedBenchFlags(fs *flag.FlagSet) *deprecatedBench {
	d := &deprecatedBench{}
	fs.DurationVar(&d.timeout, "timeout", 0, "deprecated: use --run-timeout (not read from LONGPOLL_TIMEOUT, which is subscribe's)")
	fs.StringVar(&d.json, "json", "", "deprecated: use --json-file (not read from LONGPOLL_JSON)")
	return d
}

// apply moves the old flags given on the command line to their new
// names, with a warning.
func (d *deprecatedBench) apply(fs *flag.FlagSet, c *bench.Config, o *benchOutput, io IO) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, m := range []struct{ old, new string }{{"timeout", "run-timeout"}, {"json", "json-file"}} {
		if !set[m.old] {
			continue
		}
		if set[m.new] {
			return fmt.Errorf("--%s is the old name of --%s: give one of them", m.old, m.new)
		}
		fmt.Fprintf(io.Stderr, "longpoll bench: --%s is deprecated and goes in the next version; use --%s\n", m.old, m.new)
	}
	if set["timeout"] {
		c.Timeout = d.timeout
	}
	if set["json"] {
		o.json = d.json
	}
	return nil
}

// benchAuth is how the bench authenticates: one token for everything, or
// tokens it mints from the server's secret.
type benchAuth struct {
	token      tokenConfig
	secretFile string
}

// benchTopics is the grant that covers every topic a bench names.
const benchTopics = "bench.>"

// configure sets c's tokens; c has passed Check, so its Timeout is set.
func (a *benchAuth) configure(c *bench.Config) error {
	if a.secretFile != "" && (a.token.token != "" || a.token.file != "") {
		return errors.New("--secret-file mints the tokens: give no --token or --token-file (nor LONGPOLL_TOKEN)")
	}
	if a.token.file != "" {
		b, err := os.ReadFile(a.token.file)
		if err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		a.token.token = strings.TrimSpace(string(b))
		if a.token.token == "" {
			return fmt.Errorf("--token-file %s is empty", a.token.file)
		}
	}
	c.Token = a.token.token
	if a.secretFile == "" {
		return nil
	}
	ttl := c.Timeout + time.Minute
	pub, err := mintHS256(a.secretFile, "bench", []string{benchTopics}, []string{benchTopics}, ttl)
	if err != nil {
		return fmt.Errorf("--secret-file: %w", err)
	}
	c.Token = pub
	secret := a.secretFile
	c.SubscriberToken = func(i int) (string, error) {
		return mintHS256(secret, "bench-"+strconv.Itoa(i), []string{benchTopics}, nil, ttl)
	}
	return nil
}
