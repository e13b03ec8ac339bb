package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// TestServeNATSBadURL: a malformed nats:// --store is a usage error (exit
// 2) that says what is wrong, without the password.
func TestServeNATSBadURL(t *testing.T) {
	for _, tt := range []struct{ args, want string }{
		{"--store nats://u:s3cret@h:4222?replicas=0", "replicas"},
		{"--store nats://h:99999", "port"},
		{"--store tls://h?stream=a.b", "stream"},
		{"--store nats://h?bogus=1", `unknown option "bogus"`},
		{"--store memory --nats-creds x.creds", "nats:// or tls:// --store only"},
		{"--store nats://h --nats-creds a --nats-nkey b", "give one of them"},
	} {
		var stderr bytes.Buffer
		code := Run(t.Context(), append([]string{"serve"}, strings.Fields(tt.args)...), IO{Stdout: io.Discard, Stderr: &stderr})
		if code != ExitUsage || !strings.Contains(stderr.String(), tt.want) || strings.Contains(stderr.String(), "s3cret") {
			t.Errorf("serve %s: exit %d, %q; want exit %d naming %q", tt.args, code, stderr.String(), ExitUsage, tt.want)
		}
	}
}

func TestConfigRedactNATS(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"nats://app:s3cret@n1:4222,n2:4222?stream=S", "nats://app:xxxxx@n1:4222,n2:4222?stream=S"},
		{"tls://n1", "tls://n1:4222"},
		{"nats://u:s3cret@h?replicas=0", "nats://(an unparsable URL, hidden)"},
	} {
		if got := redact("store", tt.in); got != tt.want || strings.Contains(got, "s3cret") {
			t.Errorf("redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestServeNATS serves over an embedded current nats-server: a publish
// is stored in JetStream and a poll gets it back.
func TestServeNATS(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	storeURL := ns.ClientURL() + "?stream=CLITEST&prefix=clitest"

	st, _, code, ok := parseServe("serve", []string{"--addr", "127.0.0.1:0", "--store", storeURL, "--demo=false",
		"--dashboard=false", "--stats-interval", "0", "--transport", "std"}, func(string) (string, bool) { return "", false },
		IO{Stderr: io.Discard}, nil)
	if !ok {
		t.Fatalf("parse: exit %d", code)
	}
	if err := st.explain(st.c.check()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, st.c, slog.New(slog.DiscardHandler), ready) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	var base string
	select {
	case addr := <-ready:
		base = "http://" + addr
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}

	// A poll held at the head is woken by the publish. Its cursor comes
	// from an empty poll, so that it gets the message even if it starts
	// after the publish.
	resp, err := http.Get(base + "/v1/poll?timeout=0s&topic=room.1")
	if err != nil {
		t.Fatal(err)
	}
	var empty struct{ Cursor string }
	err = json.NewDecoder(resp.Body).Decode(&empty)
	resp.Body.Close()
	if err != nil || empty.Cursor == "" {
		t.Fatalf("empty poll: %d, %v", resp.StatusCode, err)
	}
	held := make(chan string, 1)
	go func() {
		resp, err := http.Get(base + "/v1/poll?timeout=20s&topic=room.1&cursor=" + empty.Cursor)
		if err != nil {
			held <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		held <- string(b)
	}()
	time.Sleep(100 * time.Millisecond) // most likely held by now: the publish then wakes it
	resp, err = http.Post(base+"/v1/publish", "application/json", strings.NewReader(`{"topic":"room.1","data":{"hi":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	select {
	case got := <-held:
		if !strings.Contains(got, `"hi":1`) {
			t.Fatalf("held poll got %s", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the held poll was not woken by the publish")
	}
	resp, err = http.Get(base + "/v1/poll?timeout=1&since=earliest&topic=room.1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	var reply struct {
		Messages []struct {
			Topic string          `json:"topic"`
			Seq   uint64          `json:"seq"`
			Data  json.RawMessage `json:"data"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(body, &reply); err != nil || resp.StatusCode != 200 || len(reply.Messages) != 1 ||
		reply.Messages[0].Seq != 1 || string(reply.Messages[0].Data) != `{"hi":1}` {
		t.Fatalf("poll: %d %s (%v)", resp.StatusCode, body, err)
	}

	// The message is in the stream, on the topic's subject.
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)
	s, err := js.Stream(t.Context(), "CLITEST")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetLastMsgForSubject(t.Context(), "clitest.t.room=1"); err != nil {
		t.Fatalf("the topic's record: %v", err)
	}
}
