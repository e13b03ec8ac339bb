package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/longpoll/longpoll/protocol"
)

// The admin commands speak the admin API (docs/protocol.md, "Admin API")
// with net/http and the protocol's shapes alone.

type adminCommand struct {
	name, args, summary, doc string
	run                      func(ctx context.Context, a *adminCall, pos []string) int
	flags                    func(fs *flag.FlagSet, a *adminCall)
	nargs                    int                      // positional arguments required
	check                    func(pos []string) error // of the positional arguments, when set
}

// adminCall is one admin command's settings and the one request it makes
// (topics may make several, one per page).
type adminCall struct {
	name   string // "topics", "topic rm", ...
	server string
	token  tokenConfig
	json   bool
	io     IO

	prefix string
	limit  int
	before string
	undo   bool

	bearer string // the token read from token
}

const adminDoc = `Administer a running server through its admin API: list and delete
topics, refuse a user's tokens, look at the nodes, drain a node.

Under serve --auth jwt the token needs the admin grant (longpoll token
--admin ...): --token, --token-file or LONGPOLL_TOKEN (or
LONGPOLL_TOKEN_FILE). Under --auth none the server answers loopback clients
only.

Output is a table for people; --json prints the server's JSON instead.
Times are RFC 3339 in UTC. A refusal by the server prints
"longpoll admin: CODE: MESSAGE" on stderr and exits with status 1; a usage
error exits with status 2.`

func adminCommands() []adminCommand {
	return []adminCommand{
		{name: "topics", summary: "list the topics: head, oldest, held polls, retained messages and bytes, last publish",
			doc: `List the topics in the order of their names, every page of them unless
--limit caps the total. WAITING counts the polls held on the node that
answers (each node of a cluster holds its own).`,
			flags: func(fs *flag.FlagSet, a *adminCall) {
				fs.StringVar(&a.prefix, "prefix", "", "only the topics whose names start with this")
				fs.IntVar(&a.limit, "limit", 0, "most topics to list (0: all)")
			},
			run: adminTopics},
		{name: "topic rm", args: "TOPIC", nargs: 1, summary: "delete a topic and every message it retains",
			doc: `Delete TOPIC and every message it retains. Deleting a topic that does not
exist is not an error: the command says so and exits 0.`,
			check: func(pos []string) error {
				if err := protocol.ValidateTopic(pos[0]); err != nil {
					return fmt.Errorf("topic %q: %s", pos[0], strings.TrimPrefix(err.Error(), "longpoll: "))
				}
				return nil
			},
			run: adminTopicRm},
		{name: "disconnect", args: "SUB", nargs: 1, summary: "refuse the tokens of a subject issued before a time, and end its polls",
			doc: `Refuse every token of subject SUB issued before --before (default: now, as
the server sees it): its requests are refused with 401 token_revoked, and
its held polls end, until it comes with a token issued after that time.
Clients that renew tokens (--token-file, the JS and Go clients' token
hooks) get a new one and go on. Needs serve --auth jwt.`,
			flags: func(fs *flag.FlagSet, a *adminCall) {
				fs.StringVar(&a.before, "before", "", "refuse tokens issued before this RFC 3339 time (default: now, as the server sees it)")
			},
			run: adminDisconnect},
		{name: "node", summary: "show this node (version, store, readiness, held polls, draining) and the other live nodes",
			doc: `Show the node that answers and the other live nodes sharing its store.`,
			run: adminNode},
		{name: "drain", summary: "stop taking new polls on the node that answers (--undo: take them again)",
			doc: `Drain the node that answers: it answers held polls and refuses new ones
with 503 draining, and its readiness check fails, so that a load balancer
moves clients to other nodes. --undo takes polls again.`,
			flags: func(fs *flag.FlagSet, a *adminCall) {
				fs.BoolVar(&a.undo, "undo", false, "stop draining: take new polls again")
			},
			run: adminDrain},
	}
}

func adminUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: longpoll admin <command> [flags] [arguments]\n\n%s\n\nCommands:\n", adminDoc)
	for _, c := range adminCommands() {
		fmt.Fprintf(w, "  %-22s %s\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
	}
	fmt.Fprintln(w, "\nEach takes --server, --token, --token-file and --json. Run \"longpoll admin <command> --help\" for its flags.")
}

func runAdmin(ctx context.Context, args []string, sio IO) int {
	if len(args) == 0 {
		adminUsage(sio.Stderr)
		return ExitUsage
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		adminUsage(sio.Stdout)
		return ExitOK
	case "topic":
		if len(args) < 2 || args[1] != "rm" {
			fmt.Fprintf(sio.Stderr, "longpoll admin: topic takes a command: rm TOPIC\n\n")
			adminUsage(sio.Stderr)
			return ExitUsage
		}
		name, args = "topic rm", args[1:]
	}
	for _, c := range adminCommands() {
		if c.name == name {
			return runAdminCommand(ctx, c, args[1:], sio)
		}
	}
	fmt.Fprintf(sio.Stderr, "longpoll admin: unknown command %q\n\n", name)
	adminUsage(sio.Stderr)
	return ExitUsage
}

func runAdminCommand(ctx context.Context, c adminCommand, args []string, sio IO) int {
	a := &adminCall{name: c.name, io: sio}
	full := "admin " + c.name
	fs := newFlagSet(full, c.args, sio)
	fs.StringVar(&a.server, "server", defaultServer, "URL of the longpoll server")
	tokenFlags(fs, &a.token, "read once")
	fs.BoolVar(&a.json, "json", false, "print the server's JSON instead of a table")
	if c.flags != nil {
		c.flags(fs, a)
	}
	// Only where the server is and the token come from the environment:
	// a LONGPOLL_JSON or LONGPOLL_PREFIX meant for another command must not
	// change what an admin command prints or does.
	noEnv := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name != "server" && f.Name != "token" && f.Name != "token-file" {
			noEnv[f.Name] = true
		}
	})
	setUsage(fs, full, c.args, c.doc, sio, noEnv)
	hidden, getenv := tokenEnv(func(k string) (string, bool) {
		if k == envName("server") || k == envName("token") || k == envName("token-file") {
			return os.LookupEnv(k)
		}
		return "", false
	})
	pos, code, ok := parseArgs(fs, args, hidden, sio)
	if !ok {
		return code
	}
	bad := func(format string, v ...any) int {
		code := usageError(sio, full, format, v...)
		fs.Usage()
		return code
	}
	if err := a.token.fromEnv(fs, getenv); err != nil {
		return bad("%v", err)
	}
	switch {
	case len(pos) < c.nargs:
		return bad("%s is required", c.args)
	case len(pos) > c.nargs:
		return bad("unexpected argument %q", pos[c.nargs])
	case a.limit < 0:
		return bad("--limit must not be negative")
	}
	if err := checkServer(a.server); err != nil {
		return bad("%v", err)
	}
	if c.check != nil {
		if err := c.check(pos); err != nil {
			return bad("%v", err)
		}
	}
	if a.before != "" {
		if _, err := time.Parse(time.RFC3339, a.before); err != nil {
			return bad("--before %q is not an RFC 3339 time (2026-12-05T09:30:00Z)", a.before)
		}
	}
	if err := a.readToken(); err != nil {
		return bad("%v", err)
	}
	return c.run(ctx, a, pos)
}

func checkServer(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--server %q: want http://host:port or https://host", s)
	}
	return nil
}

func (a *adminCall) readToken() error {
	a.bearer = a.token.token
	if a.token.file == "" {
		return nil
	}
	b, err := os.ReadFile(a.token.file)
	if err != nil {
		return fmt.Errorf("--token-file: %w", err)
	}
	if a.bearer = strings.TrimSpace(string(b)); a.bearer == "" {
		return fmt.Errorf("--token-file %s is empty", a.token.file)
	}
	return nil
}

// adminTimeout bounds each request: every admin call is answered at once.
const adminTimeout = 30 * time.Second

// errAdmin is a failure already printed.
var errAdmin = errors.New("admin request failed")

// do sends one request to path (under /v1/admin/) and decodes a 200
// reply into out, returning its body too. Any failure is printed on
// stderr and returned as errAdmin.
func (a *adminCall) do(ctx context.Context, method, path string, q url.Values, body, out any) ([]byte, error) {
	u := strings.TrimRight(a.server, "/") + "/v1/admin/" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, a.fail("%v", err)
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, a.fail("%v", err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+a.bearer)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, a.fail("%v", err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return nil, a.fail("reading the reply: %v", err)
	}
	if res.StatusCode != http.StatusOK {
		return nil, a.refused(res.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return nil, a.fail("the reply is not the admin API's JSON (%v): %.200s", err, b)
	}
	return b, nil
}

func (a *adminCall) fail(format string, v ...any) error {
	fmt.Fprintf(a.io.Stderr, "longpoll admin: %s\n", fmt.Sprintf(format, v...))
	return errAdmin
}

// refused prints the server's error, and what to do about the usual ones.
func (a *adminCall) refused(status int, body []byte) error {
	var e protocol.ErrorReply
	if json.Unmarshal(body, &e) != nil || e.Error.Code == "" {
		return a.fail("%d %s: %.200s", status, http.StatusText(status), bytes.TrimSpace(body))
	}
	fmt.Fprintf(a.io.Stderr, "longpoll admin: %s: %s\n", e.Error.Code, e.Error.Message)
	switch e.Error.Code {
	case protocol.CodeUnauthorized, protocol.CodeTokenExpired, protocol.CodeTokenRevoked:
		fmt.Fprintln(a.io.Stderr, "longpoll admin: give a valid token with the admin grant: --token, --token-file or LONGPOLL_TOKEN (longpoll token --admin)")
	case protocol.CodeForbidden:
		fmt.Fprintln(a.io.Stderr, "longpoll admin: the token lacks the admin grant (longpoll token --admin)")
	case protocol.CodeNotFound:
		if status == http.StatusNotFound && a.name != "topic rm" {
			fmt.Fprintln(a.io.Stderr, "longpoll admin: is --server a longpoll server with the admin API?")
		}
	}
	return errAdmin
}

// print writes the server's JSON with --json, else calls table.
func (a *adminCall) print(raw []byte, table func(w *tabwriter.Writer)) int {
	if a.json {
		raw = bytes.TrimSpace(raw)
		a.io.Stdout.Write(append(raw, '\n'))
		return ExitOK
	}
	w := tabwriter.NewWriter(a.io.Stdout, 0, 4, 2, ' ', 0)
	table(w)
	if err := w.Flush(); err != nil {
		fmt.Fprintf(a.io.Stderr, "longpoll admin: writing to stdout: %v\n", err)
		return ExitError
	}
	return ExitOK
}

func adminTopics(ctx context.Context, a *adminCall, _ []string) int {
	var all protocol.AdminTopics
	all.Topics = []protocol.AdminTopic{}
	after := ""
	for {
		q := url.Values{}
		if a.prefix != "" {
			q.Set("prefix", a.prefix)
		}
		page := protocol.MaxTopicsLimit
		if a.limit > 0 {
			page = min(page, a.limit-len(all.Topics))
		}
		q.Set("limit", strconv.Itoa(page))
		if after != "" {
			q.Set("after", after)
		}
		var r protocol.AdminTopics
		if _, err := a.do(ctx, http.MethodGet, "topics", q, nil, &r); err != nil {
			return ExitError
		}
		all.Topics = append(all.Topics, r.Topics...)
		all.Next = r.Next
		if r.Next == "" || (a.limit > 0 && len(all.Topics) >= a.limit) {
			break
		}
		if r.Next == after {
			fmt.Fprintf(a.io.Stderr, "longpoll admin: the server gave the same next page twice (%q)\n", after)
			return ExitError
		}
		after = r.Next
	}
	raw, _ := json.Marshal(all)
	return a.print(raw, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "TOPIC\tHEAD\tOLDEST\tWAITING\tRETAINED\tBYTES\tLAST PUBLISH")
		for _, t := range all.Topics {
			fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%s\t%s\n", t.Topic, t.Head, t.Oldest, t.Waiting, t.Retained, humanBytes(t.Bytes), utcTime(t.LastPublish))
		}
	})
}

func adminTopicRm(ctx context.Context, a *adminCall, pos []string) int {
	topic := pos[0]
	var r protocol.AdminTopicDeleted
	raw, err := a.do(ctx, http.MethodDelete, "topics/"+url.PathEscape(topic), nil, nil, &r)
	if err != nil {
		return ExitError
	}
	return a.print(raw, func(w *tabwriter.Writer) {
		if r.Deleted {
			fmt.Fprintf(w, "deleted topic %s\n", r.Topic)
		} else {
			fmt.Fprintf(w, "topic %s did not exist: nothing deleted\n", r.Topic)
		}
	})
}

func adminDisconnect(ctx context.Context, a *adminCall, pos []string) int {
	body := protocol.AdminDisconnect{Sub: pos[0]}
	if a.before != "" {
		t, _ := time.Parse(time.RFC3339, a.before) // checked
		body.Before = &t
	}
	var r protocol.AdminDisconnect
	raw, err := a.do(ctx, http.MethodPost, "disconnect", nil, body, &r)
	if err != nil {
		return ExitError
	}
	return a.print(raw, func(w *tabwriter.Writer) {
		fmt.Fprintf(w, "tokens of %q issued before %s are refused\n", r.Sub, utcTime(r.Before))
	})
}

func adminNode(ctx context.Context, a *adminCall, _ []string) int {
	var n protocol.AdminNode
	raw, err := a.do(ctx, http.MethodGet, "node", nil, nil, &n)
	if err != nil {
		return ExitError
	}
	return a.print(raw, func(w *tabwriter.Writer) {
		fmt.Fprintf(w, "node\t%s\n", n.Node)
		fmt.Fprintf(w, "version\t%s\n", n.Version)
		for _, kv := range [][2]string{{"commit", n.Commit}, {"built", n.Built}, {"go", n.Go}} {
			if kv[1] != "" {
				fmt.Fprintf(w, "%s\t%s\n", kv[0], kv[1])
			}
		}
		fmt.Fprintf(w, "started\t%s\n", utcTime(&n.Started))
		fmt.Fprintf(w, "store\t%s (%s)\n", n.Store.Kind, readiness(n.Store.Ready))
		fmt.Fprintf(w, "ready\t%s\n", yesNo(n.Ready))
		fmt.Fprintf(w, "draining\t%s\n", yesNo(n.Draining))
		fmt.Fprintf(w, "polls held\t%d\n", n.PollsHeld)
		fmt.Fprintf(w, "topics waited\t%d\n", n.TopicsWaited)
		fmt.Fprintf(w, "config digest\t%s\n", n.ConfigDigest)
		if len(n.Nodes) == 0 {
			return
		}
		fmt.Fprintln(w, "\nNODE\tVERSION\tSTARTED\tREADY\tDRAINING\tPOLLS HELD\tTOPICS WAITED\tSEEN")
		for _, m := range append([]protocol.AdminNode{n}, n.Nodes...) {
			seen := "(this node)"
			if m.Seen != nil {
				seen = utcTime(m.Seen)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", m.Node, m.Version, utcTime(&m.Started), yesNo(m.Ready), yesNo(m.Draining), m.PollsHeld, m.TopicsWaited, seen)
		}
	})
}

func adminDrain(ctx context.Context, a *adminCall, _ []string) int {
	method := http.MethodPost
	if a.undo {
		method = http.MethodDelete
	}
	var r protocol.AdminDrain
	raw, err := a.do(ctx, method, "drain", nil, nil, &r)
	if err != nil {
		return ExitError
	}
	return a.print(raw, func(w *tabwriter.Writer) {
		if r.Draining {
			fmt.Fprintln(w, "draining: the node answers its held polls and takes no new ones (longpoll admin drain --undo to stop)")
		} else {
			fmt.Fprintln(w, "not draining: the node takes new polls")
		}
	})
}

// utcTime formats t as RFC 3339 in UTC, "-" for none.
func utcTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func readiness(ready bool) string {
	if ready {
		return "ready"
	}
	return "not ready"
}

// humanBytes formats n in B, KiB, MiB, GiB or TiB, with one decimal
// below 10 of a unit.
func humanBytes(n uint64) string {
	if n < 1024 {
		return strconv.FormatUint(n, 10) + " B"
	}
	v, unit := float64(n), ""
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB", "PiB"} {
		v, unit = v/1024, u
		if v < 1024 {
			break
		}
	}
	if v < 10 {
		return strconv.FormatFloat(v, 'f', 1, 64) + " " + unit
	}
	return strconv.FormatFloat(v, 'f', 0, 64) + " " + unit
}
