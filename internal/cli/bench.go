package cli

import (
	"context"
	"flag"
	"fmt"

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
--timeout. A progress bar goes to stderr, a table to stdout; --json and
--svg write the figures and a chart of the latency distribution.

Several --server URLs, comma-separated, measure the nodes of one cluster
(longpoll serve processes sharing a Redis store): subscriber i polls URL
(i / topics) mod N, every publish goes to the first URL, so deliveries on the others
are wake-ups across nodes, and a poll counts as held when its node says
so. --server-pid takes the nodes' pids the same way; their RSS and CPU
time are summed.

Example, the server pinned to CPU 0 and the load to CPU 1:

  taskset -c 1 longpoll bench --scenario fanout --subscribers 10000 \
    --spawn 'taskset -c 0 longpoll serve --addr 127.0.0.1:8080 --log-level warn' \
    --server http://127.0.0.1:8080 --json fanout.json --svg fanout.svg`

func runBench(ctx context.Context, args []string, io IO) int {
	if bench.IsWorker() {
		return bench.Worker(ctx, io.Stdin, io.Stdout)
	}
	var c bench.Config
	var o benchOutput
	fs := newFlagSet("bench", "", io)
	benchFlags(fs, &c, &o)
	flagsUsage := fs.Usage
	fs.Usage = func() {
		flagsUsage()
		fmt.Fprintf(io.Stderr, "\n%s\n", benchDoc)
	}
	pos, code, ok := parseArgs(fs, args, nil, io)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(io, "bench", "unexpected argument %q", pos[0])
	}
	if err := c.Check(); err != nil {
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
	fs.StringVar(&c.Server, "server", "http://127.0.0.1:8080", "base URL of the server; several comma-separated are nodes of one cluster: subscriber i polls URL (i / topics) mod N, every publish goes to the first, held polls are summed over all")
	fs.IntVar(&c.Subscribers, "subscribers", 1000, "subscriber connections in all")
	fs.IntVar(&c.Topics, "topics", 0, "topics the subscribers spread over (0: 1; throughput: subscribers/10)")
	fs.IntVar(&c.Publishers, "publishers", 0, "concurrent publishers (0: min(topics, 8))")
	fs.IntVar(&c.Messages, "messages", 0, "fanout: rounds (0: 5); burst: messages per topic (0: 500); throughput: most messages (0: no cap)")
	fs.IntVar(&c.Warmup, "warmup", 1, "fanout: rounds before the measured ones, not measured: the first round's replies find the load's buffers and stacks cold")
	fs.Float64Var(&c.Rate, "rate", 0, "throughput: messages per second in all (0: as fast as replies come)")
	fs.IntVar(&c.Size, "size", 0, "bytes of padding in each message")
	fs.DurationVar(&c.Duration, "duration", 0, "throughput: publishing time (0: 10s); capacity: holding time (0: 5s)")
	fs.DurationVar(&c.Timeout, "timeout", 0, "bound on the whole run (0: 2m)")
	fs.DurationVar(&c.StartAfter, "start-after", 0, "begin the scenario this long after the run began, once every subscriber is held (0: at once), so that benches started together publish together")
	fs.DurationVar(&c.RoundEvery, "round-every", 0, "fanout: publish round n no sooner than --start-after + --round-offset + (n-1) x this after the run began (0: as soon as every subscriber is held again), so that two benches take turns; the subscribers stay until the turn after the last round")
	fs.DurationVar(&c.RoundOffset, "round-offset", 0, "fanout: where in each --round-every period this bench's rounds begin")
	fs.BoolVar(&c.ReadFirst, "read-first", false, "fanout: each worker's subscribers re-poll once all of them have read the round's message (or 1 s after their own), so that re-polls do not delay the reading of other subscribers' replies")
	fs.DurationVar(&c.PollTimeout, "poll-timeout", 0, "hold each poll asks for (0: 50s; Nchan's is set in its config)")
	fs.IntVar(&c.Workers, "workers", 0, fmt.Sprintf("worker processes (0: one per %d subscribers)", bench.ConnsPerWorker))
	fs.IntVar(&c.SourceAddrs, "source-addrs", 0, fmt.Sprintf("loopback source addresses 127.0.0.1 to .N (0: one per %d subscribers on a loopback server, else none)", bench.ConnsPerSourceAddr))
	fs.StringVar(&c.ServerPID, "server-pid", "", "pid of the server, to read its RSS and CPU time from /proc; with several --server URLs, their pids comma-separated in the same order (at most one per URL), summed")
	fs.StringVar(&c.Spawn, "spawn", "", `command (run with /bin/sh -c) that starts the server; the bench measures it and stops it; the word "longpoll" names this binary; one --server URL only`)
	fs.StringVar(&o.json, "json", "", "file to write the result to, as JSON")
	fs.StringVar(&o.svg, "svg", "", "file to write a chart of the latency distribution to, as SVG")
	fs.StringVar(&o.compare, "compare", "", "a --json file of an earlier run to draw beside this one in --svg")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress bar")
}

// write prints res as a table, then writes it to --json and draws it, beside
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
