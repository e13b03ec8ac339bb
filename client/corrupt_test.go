package client_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/longpoll/longpoll"
	"github.com/longpoll/longpoll/broker/bolt"
	"github.com/longpoll/longpoll/client"
)

// A message the disk store cannot read back reaches the subscriber as a
// "corrupt" gap in its place, and the subscription goes on after it.
func TestCorruptGapPassesThrough(t *testing.T) {
	dir := t.TempDir()
	b, err := bolt.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var pubs []longpoll.Publication
	for _, d := range []string{`{"n":1}`, `{"n":2}`, `{"n":3}`, `{"n":4}`, `{"n":5}`} {
		pubs = append(pubs, longpoll.Publication{Topic: "t", Data: json.RawMessage(d)})
	}
	if _, err := b.Append(t.Context(), pubs); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// {"n":3} becomes {"n":2}: still JSON, caught by its checksum.
	path := filepath.Join(dir, bolt.FileName)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := bytes.Index(data, []byte(`{"n":3}`)); i >= 0; i = bytes.Index(data, []byte(`{"n":3}`)) {
		data[i+5] ^= 0x01
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}

	s := startServer(t, serverConfig{dataDir: dir})
	c := newClient(t, s.URL, fast()...)
	got := collect(t, c.Subscribe(t.Context(), []string{"t"}, client.WithSince(client.Earliest)), 5)
	var lines []string
	for _, ev := range got {
		lines = append(lines, describe(ev))
	}
	want := `msg t 1 {"n":1}|msg t 2 {"n":2}|gap t corrupt 1|msg t 4 {"n":4}|msg t 5 {"n":5}`
	if strings.Join(lines, "|") != want {
		t.Fatalf("got  %s\nwant %s", strings.Join(lines, "|"), want)
	}
}
