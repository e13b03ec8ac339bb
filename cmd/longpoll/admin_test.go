package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/longpoll/longpoll/broker/redis/redistest"
	"github.com/longpoll/longpoll/protocol"
)

// admin runs longpoll admin ARGS against s and fails the test unless it
// exits with want.
func admin(t *testing.T, s *server, env []string, want int, args ...string) (stdout, stderr string) {
	t.Helper()
	code, out, errs := run(t, append([]string{"LONGPOLL_SERVER=" + s.url}, env...), append([]string{"admin"}, args...)...)
	if code != want {
		t.Fatalf("longpoll admin %s: exit %d, want %d\nstdout:\n%sstderr:\n%s", strings.Join(args, " "), code, want, out, errs)
	}
	return out, errs
}

// adminJSON runs longpoll admin ARGS --json against s and decodes its
// output into v, which must take every field (a field the protocol's
// shape lacks fails the test).
func adminJSON(t *testing.T, s *server, env []string, v any, args ...string) {
	t.Helper()
	out, _ := admin(t, s, env, 0, append(args, "--json")...)
	d := json.NewDecoder(strings.NewReader(out))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		t.Fatalf("longpoll admin %s --json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// holdPoll holds a poll on topic at s until the test ends.
func holdPoll(t *testing.T, s *server, topic string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := http.NewRequestWithContext(ctx, "GET", s.url+"/v1/poll?topic="+topic+"&timeout=60", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	waitWaiting(t, s.url, topic, 1)
}

// publishTopics publishes one message to each of n topics named
// prefix0000, prefix0001, ..., in batches.
func publishTopics(t *testing.T, s *server, prefix string, n int) []string {
	t.Helper()
	var names []string
	for i := 0; i < n; i += 500 {
		var msgs []string
		for j := i; j < min(n, i+500); j++ {
			names = append(names, fmt.Sprintf("%s%04d", prefix, j))
			msgs = append(msgs, fmt.Sprintf(`{"topic":%q,"data":%d}`, names[len(names)-1], j))
		}
		mustPublish(t, s.url, `{"messages":[`+strings.Join(msgs, ",")+`]}`)
	}
	return names
}

// TestAdminCommands: every admin command through the binary, against each
// store, as tables and as --json that decodes into the protocol's shapes.
func TestAdminCommands(t *testing.T) {
	stores := []struct {
		name string
		args func(t *testing.T) []string
	}{
		{"memory", func(*testing.T) []string { return nil }},
		{"disk", func(t *testing.T) []string { return []string{"--store", "disk", "--data-dir", t.TempDir()} }},
		{"redis", func(t *testing.T) []string { return []string{"--store", redistest.Start(t).URL()} }},
	}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			args := st.args(t)
			s := startServer(t, nil, args...)
			mustPublish(t, s.url, `{"messages":[{"topic":"adm.a","data":1},{"topic":"adm.a","data":2},{"topic":"adm.a","data":3},{"topic":"adm.b/c","data":"x"},{"topic":"other","data":0}]}`)
			holdPoll(t, s, "adm.a")

			// topics: the table, then the same as JSON.
			out, _ := admin(t, s, nil, 0, "topics", "--prefix", "adm.")
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 3 || !strings.HasPrefix(lines[0], "TOPIC") || !strings.Contains(lines[0], "LAST PUBLISH") {
				t.Fatalf("admin topics --prefix adm.: want a header and 2 rows:\n%s", out)
			}
			if f := strings.Fields(lines[1]); f[0] != "adm.a" || f[1] != "3" || f[3] != "1" || f[4] != "3" || !strings.HasSuffix(lines[1], "Z") {
				t.Fatalf("adm.a's row: want head 3, waiting 1, retained 3, a UTC time:\n%s", out)
			}
			if f := strings.Fields(lines[2]); f[0] != "adm.b/c" {
				t.Fatalf("second row:\n%s", out)
			}
			var ts protocol.AdminTopics
			adminJSON(t, s, nil, &ts, "topics", "--prefix", "adm.")
			if len(ts.Topics) != 2 || ts.Next != "" {
				t.Fatalf("admin topics --json: %+v", ts)
			}
			a := ts.Topics[0]
			if a.Topic != "adm.a" || a.Head != 3 || a.Waiting != 1 || a.Retained != 3 || a.Bytes == 0 || a.LastPublish == nil ||
				time.Since(*a.LastPublish) > time.Minute {
				t.Fatalf("adm.a: %+v", a)
			}

			// Every page unless --limit caps the total; --limit past a
			// page follows next and says where the rest starts.
			names := publishTopics(t, s, "pg.", 1203)
			var all protocol.AdminTopics
			adminJSON(t, s, nil, &all, "topics", "--prefix", "pg.")
			got := make([]string, len(all.Topics))
			for i, x := range all.Topics {
				got[i] = x.Topic
			}
			if !slices.Equal(got, names) || all.Next != "" {
				t.Fatalf("admin topics --prefix pg.: %d topics (next %q), want the %d published, in order", len(got), all.Next, len(names))
			}
			var capped protocol.AdminTopics
			adminJSON(t, s, nil, &capped, "topics", "--prefix", "pg.", "--limit", "1100")
			if len(capped.Topics) != 1100 || capped.Topics[1099].Topic != names[1099] || capped.Next == "" {
				t.Fatalf("--limit 1100: %d topics, next %q", len(capped.Topics), capped.Next)
			}
			out, _ = admin(t, s, nil, 0, "topics", "--prefix", "pg.", "--limit", "2")
			if n := strings.Count(out, "\n"); n != 3 {
				t.Fatalf("--limit 2: want a header and 2 rows:\n%s", out)
			}

			// topic rm: a topic whose name holds a slash, then again.
			out, _ = admin(t, s, nil, 0, "topic", "rm", "adm.b/c")
			if !strings.Contains(out, "deleted topic adm.b/c") {
				t.Fatalf("admin topic rm: %s", out)
			}
			var del protocol.AdminTopicDeleted
			adminJSON(t, s, nil, &del, "topic", "rm", "adm.b/c")
			if del != (protocol.AdminTopicDeleted{Topic: "adm.b/c", Deleted: false}) {
				t.Fatalf("admin topic rm again: %+v", del)
			}
			adminJSON(t, s, nil, &ts, "topics", "--prefix", "adm.")
			if len(ts.Topics) != 1 || ts.Topics[0].Topic != "adm.a" {
				t.Fatalf("after rm: %+v", ts)
			}

			// node
			var n protocol.AdminNode
			adminJSON(t, s, nil, &n, "node")
			if n.Node == "" || n.Version == "" || n.Go == "" || !n.Ready || !n.Store.Ready || n.Store.Kind == "" ||
				n.PollsHeld < 1 || n.TopicsWaited < 1 || n.Draining || n.Started.IsZero() || time.Since(n.Started) > time.Hour {
				t.Fatalf("admin node: %+v", n)
			}
			out, _ = admin(t, s, nil, 0, "node")
			for _, want := range []string{"node ", n.Node, "polls held", "draining", "no", n.Store.Kind} {
				if !strings.Contains(out, want) {
					t.Fatalf("admin node: no %q in\n%s", want, out)
				}
			}

			// Nodes sharing the store list each other.
			if st.name == "redis" {
				s2 := startServer(t, nil, args...)
				adminJSON(t, s, nil, &n, "node")
				if len(n.Nodes) != 1 || n.Nodes[0].Node == n.Node || n.Nodes[0].Seen == nil || n.Nodes[0].Nodes != nil {
					t.Fatalf("admin node with a second node on the store: %+v", n)
				}
				out, _ = admin(t, s, nil, 0, "node")
				if !strings.Contains(out, "(this node)") || !strings.Contains(out, n.Nodes[0].Node) || !strings.Contains(out, "SEEN") {
					t.Fatalf("admin node with a second node: no table of both:\n%s", out)
				}
				var n2 protocol.AdminNode
				adminJSON(t, s2, nil, &n2, "node")
				if len(n2.Nodes) != 1 || n2.Nodes[0].Node != n.Node {
					t.Fatalf("admin node on the second node: %+v", n2)
				}
			}

			// drain: new polls are refused until --undo.
			var d protocol.AdminDrain
			adminJSON(t, s, nil, &d, "drain")
			if !d.Draining {
				t.Fatalf("admin drain: %+v", d)
			}
			if st, body := get(t, s.url+"/v1/poll?topic=x&timeout=0", ""); st != http.StatusServiceUnavailable || !strings.Contains(body, protocol.CodeDraining) {
				t.Fatalf("a poll while draining: %d %s", st, body)
			}
			adminJSON(t, s, nil, &n, "node")
			if !n.Draining {
				t.Fatalf("admin node while draining: %+v", n)
			}
			out, _ = admin(t, s, nil, 0, "drain", "--undo")
			if !strings.Contains(out, "not draining") {
				t.Fatalf("admin drain --undo: %s", out)
			}
			if st, body := get(t, s.url+"/v1/poll?topic=x&timeout=0", ""); st != http.StatusOK {
				t.Fatalf("a poll after drain --undo: %d %s", st, body)
			}

			// disconnect needs tokens: under --auth none it is refused.
			_, errs := admin(t, s, nil, 1, "disconnect", "alice")
			if !strings.HasPrefix(errs, "longpoll admin: "+protocol.CodeInvalidParameter+": ") {
				t.Fatalf("admin disconnect under --auth none: %s", errs)
			}
		})
	}
}

// TestAdminJWT: under --auth jwt an admin token works, from each of its
// sources; a token without the admin grant is refused 403 and none 401;
// disconnect revokes a subject's older tokens.
func TestAdminJWT(t *testing.T) {
	s, secret, user := jwtServer(t)
	root := token(t, "--secret-file", secret, "--sub", "root", "--admin")
	file := filepath.Join(t.TempDir(), "token")
	writeToken(t, file, root)
	mustHave := func(errs, want string) {
		t.Helper()
		if !strings.HasPrefix(errs, want) {
			t.Fatalf("stderr: want %q first, got\n%s", want, errs)
		}
	}

	_, errs := admin(t, s, nil, 1, "node")
	mustHave(errs, "longpoll admin: unauthorized: ")
	_, errs = admin(t, s, []string{"LONGPOLL_TOKEN=" + user}, 1, "topics")
	mustHave(errs, "longpoll admin: forbidden: ")
	if !strings.Contains(errs, "admin grant") {
		t.Fatalf("a refusal for want of the grant says so: %s", errs)
	}
	_, errs = admin(t, s, nil, 1, "drain", "--token", user)
	mustHave(errs, "longpoll admin: forbidden: ")

	var n protocol.AdminNode
	adminJSON(t, s, nil, &n, "node", "--token-file", file)
	adminJSON(t, s, []string{"LONGPOLL_TOKEN=" + root}, &n, "node")
	adminJSON(t, s, []string{"LONGPOLL_TOKEN_FILE=" + file}, &n, "node")
	adminJSON(t, s, []string{"LONGPOLL_TOKEN=" + user}, &n, "node", "--token", root) // the flag wins
	if n.Node == "" || !n.Ready {
		t.Fatalf("admin node: %+v", n)
	}
	var ts protocol.AdminTopics
	adminJSON(t, s, nil, &ts, "topics", "--token", root)

	// disconnect: the user's token, issued before now, is refused as revoked.
	if st, body := get(t, s.url+"/v1/topics/news.a", user); st != http.StatusOK {
		t.Fatalf("the user's token before disconnect: %d %s", st, body)
	}
	var dc protocol.AdminDisconnect
	adminJSON(t, s, []string{"LONGPOLL_TOKEN=" + root}, &dc, "disconnect", "ops")
	if dc.Sub != "ops" || dc.Before == nil || time.Since(*dc.Before) > time.Minute {
		t.Fatalf("admin disconnect: %+v", dc)
	}
	if st, body := get(t, s.url+"/v1/topics/news.a", user); st != http.StatusUnauthorized || !strings.Contains(body, protocol.CodeTokenRevoked) {
		t.Fatalf("the user's token after disconnect: %d %s", st, body)
	}
	before := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	out, _ := admin(t, s, []string{"LONGPOLL_TOKEN=" + root}, 0, "disconnect", "eve", "--before", before)
	if !strings.Contains(out, `"eve"`) || !strings.Contains(out, before) {
		t.Fatalf("admin disconnect --before: %s", out)
	}
}

// TestAdminUsage: usage errors exit 2, --help lists the commands, and
// of the flags only --server and the token come from the environment.
func TestAdminUsage(t *testing.T) {
	code, out, _ := run(t, nil, "admin", "--help")
	if code != 0 {
		t.Fatalf("admin --help: exit %d", code)
	}
	for _, c := range []string{"topics", "topic rm TOPIC", "disconnect SUB", "node", "drain"} {
		if !strings.Contains(out, "\n  "+c+" ") {
			t.Fatalf("admin --help does not list %q:\n%s", c, out)
		}
	}
	if code, out, errs := run(t, nil, "help"); code != 0 || !strings.Contains(out, "\n  admin ") {
		t.Fatalf("longpoll help: exit %d, admin not listed:\n%s%s", code, out, errs)
	}
	for _, args := range [][]string{
		{"admin"},
		{"admin", "nosuch"},
		{"admin", "topic"},
		{"admin", "topic", "rm"},
		{"admin", "topic", "rm", "a", "b"},
		{"admin", "topic", "rm", "bad topic"},
		{"admin", "topics", "extra"},
		{"admin", "topics", "--limit", "-1"},
		{"admin", "topics", "--no-such-flag"},
		{"admin", "disconnect"},
		{"admin", "disconnect", "bob", "--before", "yesterday"},
		{"admin", "node", "--server", "localhost:8080"},
		{"admin", "node", "--token", "a", "--token-file", "b"},
		{"admin", "drain", "--token-file", filepath.Join(t.TempDir(), "missing")},
	} {
		code, _, errs := run(t, nil, args...)
		if code != 2 || !strings.Contains(errs, "Usage: longpoll admin") {
			t.Errorf("%v: exit %d, want 2 and the usage:\n%s", args, code, errs)
		}
	}

	s := startServer(t, nil)
	// LONGPOLL_JSON and LONGPOLL_PREFIX are not read: a table of every topic.
	mustPublish(t, s.url, `{"topic":"env.a","data":1}`)
	out, _ = admin(t, s, []string{"LONGPOLL_JSON=true", "LONGPOLL_PREFIX=nomatch"}, 0, "topics")
	if !strings.HasPrefix(out, "TOPIC") || !strings.Contains(out, "env.a") {
		t.Fatalf("admin topics with LONGPOLL_JSON and LONGPOLL_PREFIX set: %s", out)
	}
	// --server wins over LONGPOLL_SERVER, which admin() sets to s; a
	// server that cannot be reached fails with status 1.
	code, _, errs := run(t, []string{"LONGPOLL_SERVER=http://127.0.0.1:1"}, "admin", "node", "--server", s.url)
	if code != 0 {
		t.Fatalf("--server over LONGPOLL_SERVER: exit %d %s", code, errs)
	}
	code, _, errs = run(t, []string{"LONGPOLL_SERVER=http://127.0.0.1:1"}, "admin", "node")
	if code != 1 || !strings.HasPrefix(errs, "longpoll admin: ") {
		t.Fatalf("an unreachable server: exit %d %s", code, errs)
	}
	// Not a longpoll server's JSON: status 1 with what came.
	code, _, errs = run(t, nil, "admin", "node", "--server", s.url+"/assets")
	if code != 1 || !strings.HasPrefix(errs, "longpoll admin: ") {
		t.Fatalf("a path without the admin API: exit %d %s", code, errs)
	}
}
