package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/client"
)

const publishDoc = `Publish DATA to TOPIC; without DATA, each line of stdin as one message, in
order; with --follow FILE, each line of FILE, following it as it grows and
is rotated until interrupted. DATA and each line must be one JSON value
({"text":"hi"}, 42, "a string", null); with --raw they are sent as JSON
strings instead. In JSON mode blank lines are skipped; with --raw every
line is a message. A line ending in CR LF loses the CR. Lines go out in
batches of up to --batch as they come.

Each message gets an idempotency id, so that publishing it again appends
nothing while the server retains the first:
  DATA      --id
  stdin     --id-prefix and the line's number: run7-1, run7-2, ...
  --follow  --id-prefix (optional; the same on every run), the file's
            identity (device:inode and a hash of its first line) and the
            line's byte offset: web1-2049:1835:9f86d081884c7d65:120
Without them the id is random: a retry by the command itself never
duplicates, a re-run does.

WARNING: ids numbered by stdin line are right only for input that is
replayed whole, such as a file sent again after a failed run. Never give
--id-prefix to a stream that starts elsewhere on each run: "tail -f" starts
at the file's last lines, so a re-run gives new lines old ids and the server
drops them as duplicates. Use --follow for a file that grows.

--follow reads FILE from its start, so a re-run sends every line again under
the same ids and the server drops those it has (a line older than the
server's retention is appended again). It follows FILE like tail -F: when
FILE is renamed or removed and created again, it reads the old file to its
end, then the new one from its start; a file truncated in place is read
again from its start as a new file (one that starts again with the very
same first line is taken for the old one). A last line waits for its
newline: at an interrupt it is left unpublished (the next run sends it
once complete); at a rotation it is sent as it is. Lines written while the
command is not running are sent by the next run only if FILE was not
rotated meanwhile.

For each message one JSON line goes to stdout:
  {"topic":"chat","seq":7,"id":"run1-3"}            ("duplicate":true if it was there already)

Failed attempts are retried with backoff for --retry-for, then the command
fails (exit status 1, naming the lines that may not be published). An
interrupt (Ctrl-C, SIGTERM) while waiting for stdin ends it with status 0;
during a publish, with status 1. With --follow an interrupt always ends it
with status 0: the next run sends any line not yet acknowledged again, under
the same id.

A server under --auth jwt needs a token: --token, --token-file or
LONGPOLL_TOKEN (or LONGPOLL_TOKEN_FILE). --token-file is read again when
the server refuses the token as expired or revoked.`

// maxBatchBytes keeps a batch well under the server's 8 MiB body limit.
const maxBatchBytes = 4 << 20

// publishConfig is every setting of longpoll publish.
type publishConfig struct {
	server, id, idPrefix, follow string
	raw, h2c                     bool
	token                        tokenConfig
	batch                        int
	retryFor                     time.Duration
}

func publishFlags(fs *flag.FlagSet, c *publishConfig) {
	fs.StringVar(&c.server, "server", defaultServer, "URL of the longpoll server")
	fs.StringVar(&c.id, "id", "", "idempotency id of DATA (at most 256 bytes)")
	fs.StringVar(&c.idPrefix, "id-prefix", "", "with stdin: each line's id is this prefix and the line's number, right only for input replayed whole (see WARNING); with --follow: the start of each id")
	fs.StringVar(&c.follow, "follow", "", "publish each line of FILE, following it as it grows and is rotated (see above)")
	fs.BoolVar(&c.raw, "raw", false, "send DATA or each line as a JSON string rather than parse it as JSON")
	fs.IntVar(&c.batch, "batch", 100, "most lines per publish (1 to 1000)")
	fs.DurationVar(&c.retryFor, "retry-for", time.Minute, "how long to retry a failed publish before giving up")
	fs.BoolVar(&c.h2c, "h2c", false, "speak cleartext HTTP/2 to an http:// server (prior knowledge)")
	tokenFlags(fs, &c.token, rereadUsage)
}

// check returns the first thing wrong with the settings and the
// arguments, TOPIC [DATA], or nil.
func (c *publishConfig) check(pos []string) error {
	switch {
	case len(pos) == 0:
		return errors.New("TOPIC is required")
	case len(pos) > 2:
		return fmt.Errorf("unexpected argument %q (quote DATA as one argument)", pos[2])
	case c.batch < 1 || c.batch > longpoll.DefaultMaxBatch:
		return fmt.Errorf("--batch must be 1 to %d", longpoll.DefaultMaxBatch)
	case c.retryFor <= 0:
		return errors.New("--retry-for must be positive")
	case len(pos) == 2 && c.follow != "":
		return errors.New("--follow publishes the lines of FILE; give no DATA")
	case len(pos) == 2 && c.idPrefix != "":
		return errors.New("--id-prefix is for stdin lines; use --id with DATA")
	case len(pos) == 1 && c.id != "":
		return errors.New("--id is for DATA; use --id-prefix with stdin lines")
	case len(c.id) > longpoll.MaxIDLen:
		return fmt.Errorf("--id is longer than %d bytes", longpoll.MaxIDLen)
	case c.follow != "" && len(c.idPrefix) > longpoll.MaxIDLen-maxFollowIDSuffix:
		return fmt.Errorf("--id-prefix with --follow is longer than %d bytes", longpoll.MaxIDLen-maxFollowIDSuffix)
	}
	if err := longpoll.ValidateTopic(pos[0]); err != nil {
		return fmt.Errorf("topic %q: %s", pos[0], topicProblem(err))
	}
	return nil
}

func runPublish(ctx context.Context, args []string, sio IO) int {
	var pc publishConfig
	fs := newFlagSet("publish", "TOPIC [DATA]", sio)
	publishFlags(fs, &pc)
	// An id in the environment would make every publish the same message.
	noEnv := map[string]bool{"id": true, "id-prefix": true, "follow": true}
	setUsage(fs, "publish", "TOPIC [DATA]", publishDoc, sio, noEnv)
	hidden, getenv := tokenEnv(func(k string) (string, bool) {
		if k == envName("id") || k == envName("id-prefix") || k == envName("follow") {
			return "", false
		}
		return os.LookupEnv(k)
	})
	pos, code, ok := parseArgs(fs, args, hidden, sio)
	if !ok {
		return code
	}
	if err := pc.token.fromEnv(fs, getenv); err != nil {
		return usageError(sio, "publish", "%v", err)
	}
	if err := pc.check(pos); err != nil {
		return usageError(sio, "publish", "%v", err)
	}
	topic := pos[0]
	c, err := newClient(pc.server, client.DefaultPollTimeout, pc.h2c, sio, pc.token.options()...)
	if err != nil {
		return usageError(sio, "publish", "%v", err)
	}
	defer c.Close()
	out := bufio.NewWriter(sio.Stdout)
	defer out.Flush()

	if len(pos) == 2 {
		return publishData(ctx, c, &pc, topic, pos[1], out, sio)
	}
	p := &linePublisher{c: c, topic: topic, raw: pc.raw, batch: pc.batch, retryFor: pc.retryFor, out: out, io: sio}
	if pc.follow != "" {
		p.follow = pc.follow
		return p.run(ctx, newFollower(pc.follow, pc.idPrefix).run)
	}
	return p.run(ctx, stdinLines(sio.Stdin, pc.idPrefix))
}

// publishData publishes DATA, the one message given as an argument, and
// prints its receipt.
func publishData(ctx context.Context, c *client.Client, pc *publishConfig, topic, text string, out io.Writer, sio IO) int {
	data, err := encodeData([]byte(text), pc.raw)
	if err != nil {
		return usageError(sio, "publish", "DATA %v", err)
	}
	pctx, cancel := context.WithTimeout(ctx, pc.retryFor)
	defer cancel()
	r, err := c.Publish(pctx, topic, data, client.WithID(pc.id))
	if err != nil {
		return publishFailed(ctx, sio, err, "DATA")
	}
	writeReceipt(out, r)
	return ExitOK
}

// encodeData returns text as the JSON value to publish: as given when it
// is valid JSON, or as a JSON string with raw.
func encodeData(text []byte, raw bool) (json.RawMessage, error) {
	if raw {
		b, err := json.Marshal(string(text))
		return b, err
	}
	if !json.Valid(text) {
		return nil, errors.New("is not valid JSON; use --raw to send text as a JSON string")
	}
	return text, nil
}

func writeReceipt(w io.Writer, r client.Receipt) {
	b := make([]byte, 0, 64+len(r.ID))
	b = append(b, `{"topic":`...)
	b = strconv.AppendQuote(b, r.Topic)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	id, _ := json.Marshal(r.ID)
	b = append(b, `,"id":`...)
	b = append(b, id...)
	if r.Duplicate {
		b = append(b, `,"duplicate":true`...)
	}
	b = append(b, "}\n"...)
	w.Write(b)
}

// publishFailed reports a failed publish of what (all or nothing).
func publishFailed(ctx context.Context, sio IO, err error, what string) int {
	if ctx.Err() != nil {
		fmt.Fprintf(sio.Stderr, "longpoll publish: interrupted; %s may not have been published\n", what)
		return ExitError
	}
	fmt.Fprintf(sio.Stderr, "longpoll publish: %v; %s may not have been published\n", explainAuth(err), what)
	return ExitError
}

// line is one line to publish.
type line struct {
	text []byte
	id   string // "" for a random one
	n    int    // stdin: the line's number, from 1
	off  int64  // --follow: the line's byte offset in its file
}

// stdinLines returns a reader of r's lines, numbered from 1, each with the
// id prefix and its number when prefix is set.
func stdinLines(r io.Reader, prefix string) func(context.Context, chan<- line) error {
	return func(ctx context.Context, lines chan<- line) error {
		br := bufio.NewReaderSize(r, 64<<10)
		for n := 1; ; n++ {
			text, err := br.ReadBytes('\n')
			if len(text) > 0 || err == nil {
				l := line{text: trimEOL(text), n: n}
				if prefix != "" {
					l.id = prefix + strconv.Itoa(n)
				}
				select {
				case lines <- l:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
		}
	}
}

// linePublisher publishes lines in order, in batches, from stdin or from
// the file it follows.
type linePublisher struct {
	c        *client.Client
	topic    string
	follow   string // the file followed; "" for stdin
	raw      bool
	batch    int
	retryFor time.Duration
	out      *bufio.Writer
	io       IO
}

// name says which lines of the input these are, in an error message.
func (p *linePublisher) name(first, last line) string {
	switch {
	case p.follow != "" && first.id == last.id:
		return "the line with id " + first.id
	case p.follow != "":
		return "the lines with ids " + first.id + " to " + last.id
	case first.n == last.n:
		return "line " + strconv.Itoa(first.n)
	}
	return fmt.Sprintf("lines %d to %d", first.n, last.n)
}

// run publishes the lines that read sends until read returns nil (at the
// input's end) or ctx ends.
func (p *linePublisher) run(ctx context.Context, read func(context.Context, chan<- line) error) int {
	lines := make(chan line, 2*p.batch)
	readErr := make(chan error, 1)
	readCtx, stopReading := context.WithCancel(ctx)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		err := read(readCtx, lines)
		if err != nil && readCtx.Err() == nil {
			readErr <- err
		}
		close(lines)
	}()
	defer func() {
		stopReading()
		// A follower stops at once; a reader blocked on stdin would only
		// stop at its end, and exits with the process.
		if p.follow != "" {
			<-readDone
		}
	}()
	source := "stdin"
	if p.follow != "" {
		source = p.follow
	}

	published := 0
	for {
		var first line
		var ok bool
		select {
		case first, ok = <-lines:
		case <-ctx.Done():
			return ExitOK // nothing in flight
		}
		if !ok {
			select {
			case err := <-readErr:
				fmt.Fprintf(p.io.Stderr, "longpoll publish: reading %s after %d messages: %v\n", source, published, err)
				return ExitError
			default:
				return ExitOK
			}
		}
		b := p.collect(first, lines)
		if len(b.pubs) > 0 {
			n, code, ok := p.publish(ctx, b)
			if !ok {
				return code
			}
			published += n
		}
		if b.bad != nil {
			fmt.Fprintf(p.io.Stderr, "longpoll publish: %v; the lines before it were published\n", b.bad)
			return ExitError
		}
	}
}

// lineBatch is the lines of one publish.
type lineBatch struct {
	pubs  []client.Publication
	lines []line // pubs' lines, for naming them in an error
	size  int    // an estimate of the request body's bytes
	bad   error  // a line that is not valid JSON ends the batch, without it
}

// collect returns a batch of first and the lines that have arrived after
// it, taken without waiting for more, up to --batch lines, maxBatchBytes
// or a line that is not valid JSON.
func (p *linePublisher) collect(first line, lines <-chan line) *lineBatch {
	b := &lineBatch{pubs: make([]client.Publication, 0, p.batch), lines: make([]line, 0, p.batch)}
	p.add(b, first)
	for b.bad == nil && len(b.pubs) < p.batch && b.size < maxBatchBytes {
		select {
		case l, ok := <-lines:
			if !ok {
				return b
			}
			p.add(b, l)
		default:
			return b
		}
	}
	return b
}

// add adds l to b, unless l is blank in JSON mode or b has ended at a bad
// line.
func (p *linePublisher) add(b *lineBatch, l line) {
	if b.bad != nil {
		return
	}
	if !p.raw && len(strings.TrimSpace(string(l.text))) == 0 {
		return
	}
	data, err := encodeData(l.text, p.raw)
	if err != nil {
		b.bad = fmt.Errorf("%s %v", p.name(l, l), err)
		return
	}
	b.pubs = append(b.pubs, client.Publication{Topic: p.topic, Data: data, ID: l.id})
	b.lines = append(b.lines, l)
	b.size += len(data) + len(l.id) + 64
}

// publish sends b, retrying for --retry-for, and prints its receipts. It
// returns how many messages it published, or false and the exit code
// when the command must end.
func (p *linePublisher) publish(ctx context.Context, b *lineBatch) (n, code int, ok bool) {
	pctx, cancel := context.WithTimeout(ctx, p.retryFor)
	rs, err := p.c.PublishBatch(pctx, b.pubs)
	cancel()
	if err != nil {
		p.out.Flush()
		if p.follow != "" && ctx.Err() != nil {
			return 0, ExitOK, false // the next run sends them again, under the same ids
		}
		return 0, publishFailed(ctx, p.io, err, p.name(b.lines[0], b.lines[len(b.lines)-1])), false
	}
	for _, r := range rs {
		writeReceipt(p.out, r)
	}
	if err := p.out.Flush(); err != nil {
		fmt.Fprintf(p.io.Stderr, "longpoll publish: writing to stdout: %v\n", err)
		return 0, ExitError, false
	}
	return len(rs), 0, true
}

func trimEOL(b []byte) []byte {
	return bytes.TrimSuffix(bytes.TrimSuffix(b, []byte{'\n'}), []byte{'\r'})
}
