package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"iter"
	"log/slog"
	"strconv"
	"time"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/client"
)

const defaultServer = "http://localhost:8080"

const subscribeDoc = `Print the messages of TOPICs as they are published, one JSON line each on
stdout, until interrupted:

  {"topic":"chat","seq":7,"time":"2026-11-27T18:38:55.305229179Z","id":"k1","data":{"text":"hi"}}

("id" only when the message has one), and a line for each gap, messages the
server could no longer provide, before the messages that follow it:

  {"gap":{"topic":"chat","reason":"expired","missed":5}}
  {"gap":{"topic":"chat","reason":"reset"}}
  {"gap":{"topic":"chat","reason":"corrupt","missed":1}}

With --cursor-file the position is saved after each batch of lines is
written, and a later run with the same file resumes where this one
stopped: a clean stop (Ctrl-C, SIGTERM) saves the last lines printed, so
nothing is printed twice across it; after a crash (SIGKILL) the batch
printed but not yet saved is printed again (at least once). Failed polls
are retried with backoff; errors that retrying cannot mend end the
command with exit status 1.

With --transport sse the messages come over one server-sent event stream
(GET /v1/stream) instead of long polls: the same lines, and the same
cursor file, which either transport resumes from; the position is saved
whenever the lines received so far are written.

A server under --auth jwt needs a token: --token, --token-file or
LONGPOLL_TOKEN (or LONGPOLL_TOKEN_FILE). When the server refuses the token
as expired or revoked, --token-file is read again, so a token that another
process rotates on disk is picked up without a restart; if the file still
holds the refused token, or the new one is refused too, the command stops
with exit status 1.`

func runSubscribe(ctx context.Context, args []string, io IO) int {
	fs := newFlagSet("subscribe", "TOPIC...", io)
	server := fs.String("server", defaultServer, "URL of the longpoll server")
	since := fs.String("since", "head", `where to start on a topic the cursor does not cover: "head" (new messages only) or "earliest" (the oldest retained)`)
	cursorFile := fs.String("cursor-file", "", "file that keeps the position across runs (created if missing)")
	timeout := fs.Duration("timeout", client.DefaultPollTimeout, "how long the server holds each poll; keep it under every proxy's idle timeout")
	limit := fs.Int("limit", 0, "most messages per batch (0: the server's default)")
	h2c := fs.Bool("h2c", false, "speak cleartext HTTP/2 to an http:// server (prior knowledge)")
	transport := fs.String("transport", "poll", `how messages come: "poll" (long polls) or "sse" (one server-sent event stream); not serve's --transport`)
	var tc tokenConfig
	tokenFlags(fs, &tc, rereadUsage)
	setUsage(fs, "subscribe", "TOPIC...", subscribeDoc, io, nil)
	hidden, getenv := tokenEnv(nil)
	topics, code, ok := parseArgs(fs, args, hidden, io)
	if !ok {
		return code
	}
	if err := tc.fromEnv(fs, getenv); err != nil {
		return usageError(io, "subscribe", "%v", err)
	}
	sinceOpt, err := checkSubscribe(topics, *since, *timeout, *limit)
	if err != nil {
		return usageError(io, "subscribe", "%v", err)
	}
	tr, err := parseTransport(*transport)
	if err != nil {
		return usageError(io, "subscribe", "%v", err)
	}
	c, err := newClient(*server, *timeout, *h2c, io, append(tc.options(), client.WithTransport(tr))...)
	if err != nil {
		return usageError(io, "subscribe", "%v", err)
	}
	defer c.Close()

	out := bufio.NewWriterSize(io.Stdout, 64<<10)
	opts := []client.SubscribeOption{client.WithSince(sinceOpt), cursorFuncs(*cursorFile, out)}
	if *limit > 0 {
		opts = append(opts, client.WithLimit(*limit))
	}
	return printEvents(ctx, c.Subscribe(ctx, topics, opts...), out, io)
}

// checkSubscribe returns the first thing wrong with the topics and the
// settings, or the start that --since names.
func checkSubscribe(topics []string, since string, timeout time.Duration, limit int) (client.Since, error) {
	if len(topics) == 0 {
		return client.Head, errors.New("at least one TOPIC is required")
	}
	for _, t := range topics {
		if err := longpoll.ValidateTopic(t); err != nil {
			return client.Head, fmt.Errorf("topic %q: %s", t, topicProblem(err))
		}
	}
	var s client.Since
	switch since {
	case "head":
		s = client.Head
	case "earliest":
		s = client.Earliest
	default:
		return client.Head, fmt.Errorf(`--since must be "head" or "earliest", not %q`, since)
	}
	if timeout <= 0 {
		return client.Head, errors.New("--timeout must be positive")
	}
	if limit < 0 {
		return client.Head, errors.New("--limit must not be negative")
	}
	return s, nil
}

// parseTransport returns the client transport that --transport names.
func parseTransport(v string) (client.Transport, error) {
	switch v {
	case "poll":
		return client.Poll, nil
	case "sse":
		return client.SSE, nil
	}
	return client.Poll, fmt.Errorf(`--transport must be "poll" or "sse", not %q`, v)
}

// cursorFuncs keeps the position in file, when it is not "". The client
// saves after the loop has taken a whole batch: the batch's lines are
// flushed first, so that a saved position was always printed.
func cursorFuncs(file string, out *bufio.Writer) client.SubscribeOption {
	load := func(context.Context) (string, error) {
		if file == "" {
			return "", nil
		}
		return client.ReadCursorFile(file)
	}
	save := func(_ context.Context, cursor string) error {
		if err := out.Flush(); err != nil {
			return fmt.Errorf("writing to stdout: %w", err)
		}
		if file == "" {
			return nil
		}
		return client.WriteCursorFile(file, cursor)
	}
	return client.WithCursorFuncs(load, save)
}

// printEvents prints events as JSON lines until they end: at an
// interrupt (ctx done; exit status 0, the position saved) or at an error
// that retrying cannot mend.
func printEvents(ctx context.Context, events iter.Seq2[client.Event, error], out *bufio.Writer, io IO) int {
	var line []byte
	for ev, err := range events {
		if err != nil {
			ferr := out.Flush()
			if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				if ferr != nil {
					fmt.Fprintf(io.Stderr, "longpoll subscribe: writing to stdout: %v\n", ferr)
					return ExitError
				}
				return ExitOK // interrupted: the position is saved
			}
			fmt.Fprintf(io.Stderr, "longpoll subscribe: %v\n", explainAuth(err))
			return ExitError
		}
		line = appendEvent(line[:0], ev)
		out.Write(line)
	}
	return ExitOK
}

// topicProblem is what ValidateTopic found wrong, without its prefix.
func topicProblem(err error) string {
	var e *longpoll.Error
	if errors.As(err, &e) {
		return e.Message
	}
	return err.Error()
}

// timeFormat is the protocol's: RFC 3339 in UTC with nine fraction digits.
const timeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// appendEvent appends ev as one JSON line.
func appendEvent(b []byte, ev client.Event) []byte {
	if g := ev.Gap; g != nil {
		b = append(b, `{"gap":{"topic":`...)
		b = strconv.AppendQuote(b, g.Topic)
		b = append(b, `,"reason":`...)
		b = strconv.AppendQuote(b, string(g.Reason))
		if g.Reason == longpoll.GapExpired || g.Reason == longpoll.GapCorrupt {
			b = append(b, `,"missed":`...)
			b = strconv.AppendUint(b, g.Missed, 10)
		}
		return append(b, "}}\n"...)
	}
	m := ev.Message
	// Topics are plain ASCII without JSON specials; ids may be anything.
	b = append(b, `{"topic":`...)
	b = strconv.AppendQuote(b, m.Topic)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, m.Seq, 10)
	b = append(b, `,"time":"`...)
	b = m.Time.UTC().AppendFormat(b, timeFormat)
	b = append(b, '"')
	if m.ID != "" {
		id, _ := json.Marshal(m.ID)
		b = append(b, `,"id":`...)
		b = append(b, id...)
	}
	b = append(b, `,"data":`...)
	b = append(b, m.Data...)
	return append(b, "}\n"...)
}

// newClient returns the client of the publish and subscribe commands; it
// reports retries on stderr.
func newClient(server string, pollTimeout time.Duration, h2c bool, io IO, extra ...client.Option) (*client.Client, error) {
	log := slog.New(slog.NewTextHandler(io.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts := append([]client.Option{client.WithLogger(log), client.WithPollTimeout(pollTimeout)}, extra...)
	if h2c {
		opts = append(opts, client.WithH2C())
	}
	c, err := client.New(server, opts...)
	if err != nil {
		return nil, fmt.Errorf("--server: %w", err)
	}
	return c, nil
}

// setUsage replaces fs's usage with doc and the flags; the flags in noEnv
// are not read from the environment.
func setUsage(fs *flag.FlagSet, name, positional, doc string, io IO, noEnv map[string]bool) {
	fs.Usage = func() {
		w := io.Stderr
		fmt.Fprintf(w, "Usage: longpoll %s [flags] %s\n\n%s\n\nFlags (the flags marked * also LONGPOLL_<NAME> in the environment):\n", name, positional, doc)
		fs.VisitAll(func(f *flag.Flag) {
			def := f.DefValue
			if def == "" {
				def = `""`
			}
			env := "*"
			if noEnv[f.Name] {
				env = " "
			}
			fmt.Fprintf(w, " %s--%-14s %s (default %s)\n", env, f.Name, f.Usage, def)
		})
	}
}
