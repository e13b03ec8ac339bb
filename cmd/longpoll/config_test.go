package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writeFile writes content to path, through a rename as an editor or a
// deployment tool would, so that a reader never sees half of it.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path+".new", []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}

// waitLogN waits until the server's log holds text n times.
func waitLogN(t *testing.T, s *server, text string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(s.logText(), text) < n {
		if time.Now().After(deadline) {
			t.Fatalf("log never said %q %d times:\n%s", text, n, s.logText())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// publishN publishes n messages to topic in one request and returns the
// status.
func publishN(t *testing.T, base string, n int) int {
	t.Helper()
	msgs := make([]string, n)
	for i := range msgs {
		msgs[i] = `{"topic":"cfg","data":1}`
	}
	resp, err := http.Post(base+"/v1/publish", "application/json", strings.NewReader(`{"messages":[`+strings.Join(msgs, ",")+`]}`))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestConfigBadFileExitsBeforeListening: a configuration file with a
// wrong value, or one serve's checks refuse, or a YAML file, makes serve
// exit 2 with a message naming the file, the key and the line, before it
// tries to listen (its address is taken: listening would fail otherwise,
// with status 1).
func TestConfigBadFileExitsBeforeListening(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := t.TempDir()
	for _, tt := range []struct{ name, content, want string }{
		{"longpoll.toml", "log-level = \"info\"\nmax-batch = \"ten\"\n", ":2: max-batch: want an integer, got a string"},
		{"longpoll.toml", "# limits\n\npoll-timeout = \"25\"\n", `:3: poll-timeout: invalid duration "25"`},
		{"longpoll.toml", "log-level = \"info\"\nno-such = 1\n", ":2: no-such: unknown key"},
		{"longpoll.toml", "max-batch = 0\n", "--max-batch must be positive (max-batch at "},
		{"longpoll.yaml", "max-batch: 10\n", ": a YAML file: the configuration file is TOML"},
	} {
		path := filepath.Join(dir, tt.name)
		writeFile(t, path, tt.content)
		code, _, stderr := run(t, nil, "serve", "--config", path, "--addr", ln.Addr().String(), "--store", "memory")
		if code != 2 || !strings.Contains(stderr, path) || !strings.Contains(stderr, tt.want) || strings.Contains(stderr, "listen") {
			t.Errorf("serve with %q: exit %d, stderr %q; want 2 and %q", tt.content, code, stderr, tt.want)
		}
	}
}

// TestConfigSIGHUP: SIGHUP reads the file again and applies the log
// level and the limits at once, without a restart; logs a changed key
// that cannot change live as needing a restart; leaves a key that a flag
// sets alone; and, when the file has become wrong, changes nothing.
func TestConfigSIGHUP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "longpoll.toml")
	writeFile(t, path, "log-level = \"info\"\nmax-batch = 2\nmax-topics-per-poll = 5\n")
	s := startServer(t, nil, "--config", path, "--max-topics-per-poll", "1")
	reloads := 0
	hup := func() {
		t.Helper()
		reloads++
		if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}

	if st := publishN(t, s.url, 3); st != http.StatusRequestEntityTooLarge {
		t.Fatalf("3 messages under max-batch = 2: %d", st)
	}
	waitLog(t, s, `msg=request`) // the info level logs requests
	if strings.Contains(s.logText(), "level=DEBUG") {
		t.Fatalf("a debug line under log-level = \"info\":\n%s", s.logText())
	}

	writeFile(t, path, "log-level = \"debug\"\nmax-batch = 3\nmax-topics-per-poll = 5\nmax-hold = \"40s\"\n")
	hup()
	waitLogN(t, s, `msg="read the configuration file again"`, reloads)
	// The new level is in force: the reload's own debug lines appear.
	waitLog(t, s, `level=DEBUG msg=setting key=log-level value=debug source="file `+path+`:1"`)
	waitLog(t, s, `msg="applied a changed setting" key=max-batch value=3 was=2`)
	waitLog(t, s, `level=WARN msg="a changed setting needs a restart" key=max-hold value=40s in_force=55s`)
	if st := publishN(t, s.url, 3); st != http.StatusOK {
		t.Fatalf("3 messages after max-batch = 3 was applied: %d", st)
	}
	// The flag --max-topics-per-poll still wins over the file's 5.
	waitLog(t, s, `level=DEBUG msg=setting key=max-topics-per-poll value=1 source="flag --max-topics-per-poll"`)

	// A file that has become wrong changes nothing: max-batch stays 3.
	writeFile(t, path, "log-level = \"debug\"\nmax-batch = 1\nretention-age = 3\n")
	hup()
	waitLog(t, s, `msg="reading the configuration file again failed: nothing changed, no key or certificate reloaded"`)
	waitLog(t, s, path+`:3: retention-age: want a duration`)
	if st := publishN(t, s.url, 3); st != http.StatusOK {
		t.Fatalf("3 messages after a wrong file: %d, want max-batch 3 still", st)
	}
	// A flag still wins after a reload: one topic per poll, not five.
	resp, err := http.Get(s.url + "/v1/poll?topic=a&topic=b&timeout=0")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a poll of 2 topics under --max-topics-per-poll 1: %d", resp.StatusCode)
	}
	// Still needing a restart at the next SIGHUP, now the file is right.
	writeFile(t, path, "log-level = \"debug\"\nmax-batch = 3\nmax-hold = \"40s\"\n")
	hup()
	waitLogN(t, s, `msg="a changed setting needs a restart" key=max-hold`, 2)
}

// TestConfigCommand: longpoll config prints every setting with where it
// comes from (flag, env, file and its line, default), masks a store
// URL's password, and shows a secret file's path, never its content.
func TestConfigCommand(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	writeFile(t, secret, "TOPSECRET-0123456789abcdef0123456789abcdef")
	path := filepath.Join(dir, "longpoll.toml")
	writeFile(t, path, "store = \"redis://app:s3cret@redis.internal:6379/0\"\n"+
		"jwt-secret-file = \"secret\"\nretention-age = \"1h\"\nmax-batch = 9\nlog-level = \"error\"\n")
	env := []string{"LONGPOLL_CONFIG=" + path, "LONGPOLL_LOG_LEVEL=warn"}
	code, out, stderr := run(t, env, "config", "--max-batch", "3")
	if code != 0 {
		t.Fatalf("config: exit %d\n%s%s", code, out, stderr)
	}
	for _, want := range []string{
		`max-batch = 3\s+# flag --max-batch`,
		`log-level = "warn"\s+# env LONGPOLL_LOG_LEVEL`,
		`retention-age = "1h0m0s"\s+# file ` + regexp.QuoteMeta(path) + `:3`,
		`jwt-secret-file = "` + regexp.QuoteMeta(secret) + `"\s+# file ` + regexp.QuoteMeta(path) + `:2`,
		`store = "redis://app:xxxxx@redis.internal:6379/0"\s+# file ` + regexp.QuoteMeta(path) + `:1`,
		`poll-timeout = "25s"\s+# default`,
		`# configuration file: ` + regexp.QuoteMeta(path) + ` \(env LONGPOLL_CONFIG\)`,
	} {
		if !regexp.MustCompile(`(?m)^` + want + `$`).MatchString(out) {
			t.Errorf("longpoll config printed no line %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "s3cret") || strings.Contains(out, "TOPSECRET") {
		t.Fatalf("longpoll config printed a secret:\n%s", out)
	}

	code, out, stderr = run(t, env, "config", "--json", "--addr=127.0.0.1:9")
	var doc struct {
		File     string
		Settings []struct {
			Key, Source, Variable string
			Value                 any
			Line                  int
		}
	}
	if code != 0 || json.Unmarshal([]byte(out), &doc) != nil || doc.File != path {
		t.Fatalf("config --json: exit %d\n%s%s", code, out, stderr)
	}
	got := map[string]string{}
	for _, s := range doc.Settings {
		got[s.Key] = s.Source
		switch s.Key {
		case "addr":
			if s.Value != "127.0.0.1:9" || s.Source != "flag" {
				t.Errorf("addr: %+v", s)
			}
		case "max-batch":
			if s.Value != 9.0 || s.Source != "file" || s.Line != 4 {
				t.Errorf("max-batch: %+v", s)
			}
		case "log-level":
			if s.Value != "warn" || s.Source != "env" || s.Variable != "LONGPOLL_LOG_LEVEL" {
				t.Errorf("log-level: %+v", s)
			}
		case "store":
			if s.Value != "redis://app:xxxxx@redis.internal:6379/0" {
				t.Errorf("store: %+v", s)
			}
		}
	}
	if len(got) < 40 || got["max-hold"] != "default" {
		t.Fatalf("config --json: %d settings, max-hold from %q", len(got), got["max-hold"])
	}
}

// TestConfigCheck: longpoll config --check FILE exits 0 with ok for a good
// file, 2 naming the file, the key and the line for a bad one.
func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	writeFile(t, good, "# tuned\nmax-batch = 100\ncors-origins = \"https://app.example\"\n")
	if code, out, stderr := run(t, nil, "config", "--check", good); code != 0 || out != good+": ok\n" {
		t.Fatalf("--check of a good file: exit %d, %q %q", code, out, stderr)
	}
	deploy := filepath.Join("..", "..", "deploy", "longpoll.toml")
	if code, out, stderr := run(t, nil, "config", "--check", deploy); code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("--check deploy/longpoll.toml: exit %d, %q %q", code, out, stderr)
	}
	for _, tt := range []struct{ content, want string }{
		{"max-batch = 100\n\nmax-hold = 55\n", ":3: max-hold: want a duration"},
		{"max-batch = 100\ncors-origins = \"app.example\"\n", `--cors-origins "app.example": an origin is scheme://host[:port] (cors-origins at ` + good + `:2)`},
		{"[limits]\nmax-batch = 100\n", ":1: limits: unknown key"},
	} {
		writeFile(t, good, tt.content)
		code, out, stderr := run(t, nil, "config", "--check", good)
		if code != 2 || out != "" || !strings.Contains(stderr, good) || !strings.Contains(stderr, tt.want) {
			t.Errorf("--check of %q: exit %d, stdout %q, stderr %q; want 2 and %q", tt.content, code, out, stderr, tt.want)
		}
	}
}
