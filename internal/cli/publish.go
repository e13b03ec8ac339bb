package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/client"
)

const publishDoc = `Publish DATA to TOPIC, or, without DATA, each line of stdin as one message,
in order. DATA and each line must be one JSON value ({"text":"hi"}, 42,
"a string", null); with --raw they are sent as JSON strings instead. In JSON
mode blank lines are skipped; with --raw every line is a message. A line
ending in CR LF loses the CR.

Each message gets an idempotency id: --id for DATA, or for stdin the
--id-prefix followed by the line's number (1, 2, ...), so that re-running a
failed pipe with the same input and prefix appends nothing twice. Without
them the id is random: a retry by the command itself never duplicates, a
re-run does. Stdin lines go out in batches of up to --batch as they arrive.

For each message one JSON line goes to stdout:
  {"topic":"chat","seq":7,"id":"run1-3"}            ("duplicate":true if it was there already)

Failed attempts are retried with backoff for --retry-for, then the command
fails (exit status 1, naming the lines that may not be published). An
interrupt (Ctrl-C, SIGTERM) while waiting for stdin ends it with status 0;
during a publish, with status 1.`

// maxBatchBytes keeps a batch well under the server's 8 MiB body limit.
const maxBatchBytes = 4 << 20

func runPublish(ctx context.Context, args []string, sio IO) int {
	fs := newFlagSet("publish", "TOPIC [DATA]", sio)
	server := fs.String("server", defaultServer, "URL of the longpoll server")
	id := fs.String("id", "", "idempotency id of DATA (at most 256 bytes)")
	idPrefix := fs.String("id-prefix", "", "with stdin: each line's id is this prefix and the line's number")
	raw := fs.Bool("raw", false, "send DATA or each line as a JSON string rather than parse it as JSON")
	batch := fs.Int("batch", 100, "most stdin lines per publish (1 to 1000)")
	retryFor := fs.Duration("retry-for", time.Minute, "how long to retry a failed publish before giving up")
	h2c := fs.Bool("h2c", false, "speak cleartext HTTP/2 to an http:// server (prior knowledge)")
	// An id in the environment would make every publish the same message.
	noEnv := map[string]bool{"id": true, "id-prefix": true}
	setUsage(fs, "publish", "TOPIC [DATA]", publishDoc, sio, noEnv)
	getenv := func(k string) (string, bool) {
		if k == envName("id") || k == envName("id-prefix") {
			return "", false
		}
		return os.LookupEnv(k)
	}
	pos, code, ok := parseArgs(fs, args, getenv, sio)
	if !ok {
		return code
	}
	switch {
	case len(pos) == 0:
		return usageError(sio, "publish", "TOPIC is required")
	case len(pos) > 2:
		return usageError(sio, "publish", "unexpected argument %q (quote DATA as one argument)", pos[2])
	case *batch < 1 || *batch > longpoll.DefaultMaxBatch:
		return usageError(sio, "publish", "--batch must be 1 to %d", longpoll.DefaultMaxBatch)
	case *retryFor <= 0:
		return usageError(sio, "publish", "--retry-for must be positive")
	case len(pos) == 2 && *idPrefix != "":
		return usageError(sio, "publish", "--id-prefix is for stdin lines; use --id with DATA")
	case len(pos) == 1 && *id != "":
		return usageError(sio, "publish", "--id is for DATA; use --id-prefix with stdin lines")
	case len(*id) > longpoll.MaxIDLen:
		return usageError(sio, "publish", "--id is longer than %d bytes", longpoll.MaxIDLen)
	}
	topic := pos[0]
	if err := longpoll.ValidateTopic(topic); err != nil {
		return usageError(sio, "publish", "topic %q: %s", topic, topicProblem(err))
	}
	c, err := newClient(*server, client.DefaultPollTimeout, *h2c, sio)
	if err != nil {
		return usageError(sio, "publish", "%v", err)
	}
	defer c.Close()
	out := bufio.NewWriter(sio.Stdout)
	defer out.Flush()

	if len(pos) == 2 {
		data, err := encodeData([]byte(pos[1]), *raw)
		if err != nil {
			return usageError(sio, "publish", "DATA %v", err)
		}
		pctx, cancel := context.WithTimeout(ctx, *retryFor)
		defer cancel()
		r, err := c.Publish(pctx, topic, data, client.WithID(*id))
		if err != nil {
			return publishFailed(ctx, sio, err, "DATA")
		}
		writeReceipt(out, r)
		return ExitOK
	}

	p := &linePublisher{c: c, topic: topic, idPrefix: *idPrefix, raw: *raw, batch: *batch, retryFor: *retryFor, out: out, io: sio}
	return p.run(ctx, sio.Stdin)
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
	fmt.Fprintf(sio.Stderr, "longpoll publish: %v; %s may not have been published\n", err, what)
	return ExitError
}

// line is one line of stdin, numbered from 1.
type line struct {
	n    int
	text []byte
}

// linePublisher publishes stdin's lines in order, in batches.
type linePublisher struct {
	c        *client.Client
	topic    string
	idPrefix string
	raw      bool
	batch    int
	retryFor time.Duration
	out      *bufio.Writer
	io       IO
}

func (p *linePublisher) run(ctx context.Context, stdin io.Reader) int {
	lines := make(chan line, 2*p.batch)
	readErr := make(chan error, 1)
	// The reader stops when run returns; one blocked reading stdin then
	// exits with the process (or at the input's end).
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	go func() {
		defer close(lines)
		r := bufio.NewReaderSize(stdin, 64<<10)
		for n := 1; ; n++ {
			text, err := r.ReadBytes('\n')
			if len(text) > 0 || err == nil {
				text = trimEOL(text)
				select {
				case lines <- line{n, text}:
				case <-readCtx.Done():
					return
				}
			}
			if err != nil {
				if err != io.EOF {
					readErr <- err
				}
				return
			}
		}
	}()

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
				fmt.Fprintf(p.io.Stderr, "longpoll publish: reading stdin after %d messages: %v\n", published, err)
				return ExitError
			default:
				return ExitOK
			}
		}
		// Take what else has arrived, without waiting for more.
		pubs, nums := make([]client.Publication, 0, p.batch), make([]int, 0, p.batch)
		size := 0
		var bad error
		add := func(l line) {
			if bad != nil {
				return
			}
			if !p.raw && len(strings.TrimSpace(string(l.text))) == 0 {
				return
			}
			data, err := encodeData(l.text, p.raw)
			if err != nil {
				bad = fmt.Errorf("line %d %v", l.n, err)
				return
			}
			id := ""
			if p.idPrefix != "" {
				id = p.idPrefix + strconv.Itoa(l.n)
			}
			pubs = append(pubs, client.Publication{Topic: p.topic, Data: data, ID: id})
			nums = append(nums, l.n)
			size += len(data) + len(id) + 64
		}
		add(first)
	fill:
		for bad == nil && len(pubs) < p.batch && size < maxBatchBytes {
			select {
			case l, ok := <-lines:
				if !ok {
					break fill
				}
				add(l)
			default:
				break fill
			}
		}
		if len(pubs) > 0 {
			pctx, cancel := context.WithTimeout(ctx, p.retryFor)
			rs, err := p.c.PublishBatch(pctx, pubs)
			cancel()
			if err != nil {
				p.out.Flush()
				return publishFailed(ctx, p.io, err, fmt.Sprintf("lines %d to %d", nums[0], nums[len(nums)-1]))
			}
			for _, r := range rs {
				writeReceipt(p.out, r)
			}
			published += len(rs)
			if err := p.out.Flush(); err != nil {
				fmt.Fprintf(p.io.Stderr, "longpoll publish: writing to stdout: %v\n", err)
				return ExitError
			}
		}
		if bad != nil {
			fmt.Fprintf(p.io.Stderr, "longpoll publish: %v; the lines before it were published\n", bad)
			return ExitError
		}
	}
}

func trimEOL(b []byte) []byte {
	return bytes.TrimSuffix(bytes.TrimSuffix(b, []byte{'\n'}), []byte{'\r'})
}
