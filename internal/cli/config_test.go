package cli

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/longpoll/longpoll/internal/eventloop"
)

// loadConfig parses args and env as longpoll serve does, then loads the
// configuration file they name.
func loadConfig(t *testing.T, env map[string]string, args ...string) (*serveSettings, error) {
	t.Helper()
	var stderr strings.Builder
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	st, _, _, ok := parseServe("serve", args, getenv, IO{Stderr: &stderr}, nil)
	if !ok {
		t.Fatalf("serve %v: %s", args, stderr.String())
	}
	return st, st.loadFile()
}

// writeConfig writes a configuration file named name in a new directory.
func writeConfig(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// value returns the text of key's flag.
func (st *serveSettings) value(key string) string { return st.fs.Lookup(key).Value.String() }

// defaults returns the text of every serve setting's default.
func defaults(t *testing.T) map[string]string {
	t.Helper()
	st, err := loadConfig(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, k := range serveKeys() {
		m[k] = st.value(k)
	}
	return m
}

// sample returns a value for f other than its default: as TOML, and as
// its flag then prints it.
func sample(f *flag.Flag) (toml, text string) {
	switch flagKind(f) {
	case kindBool:
		b := f.DefValue != "true"
		return strconv.FormatBool(b), strconv.FormatBool(b)
	case kindInt:
		n, _ := strconv.ParseInt(f.DefValue, 10, 64)
		return strconv.FormatInt(n+7, 10), strconv.FormatInt(n+7, 10)
	case kindFloat:
		return "2.5", "2.5"
	case kindDuration:
		return `"1m30s"`, "1m30s"
	case kindList:
		return `["a", "b"]`, "a,b"
	}
	return strconv.Quote("v-" + f.Name), "v-" + f.Name
}

// TestConfigEveryKeyLoads: a file that sets every key of serve, each to a
// value other than its default, sets each of them, from the file, at its
// line; the paths relative to the file's directory.
func TestConfigEveryKeyLoads(t *testing.T) {
	blank, err := loadConfig(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	want := map[string]string{}
	for _, k := range serveKeys() {
		toml, text := sample(blank.fs.Lookup(k))
		fmt.Fprintf(&b, "%s = %s\n", k, toml)
		want[k] = text
	}
	path := writeConfig(t, "longpoll.toml", b.String())
	st, err := loadConfig(t, nil, "--config", path)
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range serveKeys() {
		w := want[k]
		if pathKeys[k] {
			w = filepath.Join(filepath.Dir(path), w)
		}
		if got := st.value(k); got != w {
			t.Errorf("%s = %q, want %q", k, got, w)
		}
		if o := st.source(k); o != (origin{source: fromFile, line: i + 1}) {
			t.Errorf("%s comes from %+v, want the file at line %d", k, o, i+1)
		}
	}
}

// TestConfigErrors: each problem in a file is an error that names the
// file, the line and the key; every problem is reported, not only the
// first.
func TestConfigErrors(t *testing.T) {
	for _, tt := range []struct {
		name, content string
		line          int
		key, msg      string
	}{
		{"unknown key", "addr = \"localhost:1\"\nno-such-key = 1\n", 2, "no-such-key", "unknown key"},
		{"unknown with underscores", "\n\nmax_batch = 1\n", 3, "max_batch", "did you mean max-batch?"},
		{"config in the file", "config = \"other.toml\"\n", 1, "config", "unknown key"},
		{"string for an int", "# a comment\nmax-batch = \"10\"\n", 2, "max-batch", "want an integer, got a string"},
		{"float for an int", "max-batch = 1.5\n", 1, "max-batch", "want an integer, got a float"},
		{"int too large", "max-batch = 99999999999999999999\n", 1, "max-batch", "too large"},
		{"int for a duration", "poll-timeout = 25\n", 1, "poll-timeout", `a duration as a string with its unit, like "25s", got an integer`},
		{"bad duration", "\npoll-timeout = \"25\"\n", 2, "poll-timeout", `invalid duration "25"`},
		{"bad duration unit", "retention-age = \"1 day\"\n", 1, "retention-age", `invalid duration "1 day"`},
		{"string for a bool", "demo = \"false\"\n", 1, "demo", "want a boolean (true or false), got a string"},
		{"int for a string", "log-level = 1\n", 1, "log-level", "want a string, got an integer"},
		{"int in a list", "cors-origins = [\"https://a.example\", 2]\n", 1, "cors-origins", "got an element that is an integer"},
		{"bool for a list", "trusted-proxies = true\n", 1, "trusted-proxies", "want an array of strings or a comma-separated string, got a boolean"},
		{"a section", "max-batch = 1\n[store]\nkind = \"disk\"\n", 2, "store", "want a string, got a table"},
		{"a dotted key", "max-batch.x = 1\n", 1, "max-batch", "want an integer, got a table"},
		{"a duplicate", "addr = \"a:1\"\naddr = \"b:1\"\n", 2, "addr", "already defined"},
		{"syntax", "addr = \"a:1\"\nmax-batch = = 3\n", 2, "max-batch", ""},
		{"unterminated string", "log-level = \"info\nmax-batch = 1\n", 1, "log-level", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, "longpoll.toml", tt.content)
			_, err := loadConfig(t, nil, "--config", path)
			where := fmt.Sprintf("%s:%d: %s: ", path, tt.line, tt.key)
			if err == nil || !strings.HasPrefix(err.Error(), where) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("got %v, want an error starting %q, with %q", err, where, tt.msg)
			}
		})
	}
	t.Run("all reported", func(t *testing.T) {
		path := writeConfig(t, "longpoll.toml", "max-batch = \"x\"\nnope = 1\npoll-timeout = \"1y\"\n")
		_, err := loadConfig(t, nil, "--config", path)
		for _, want := range []string{path + ":1: max-batch:", path + ":2: nope:", path + ":3: poll-timeout:"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("got %v, want an error with %q", err, want)
			}
		}
	})
	t.Run("overridden but wrong", func(t *testing.T) {
		// A flag wins over the file, but a file that is wrong is still wrong.
		path := writeConfig(t, "longpoll.toml", "max-batch = \"x\"\n")
		if _, err := loadConfig(t, nil, "--config", path, "--max-batch", "3"); err == nil || !strings.Contains(err.Error(), ":1: max-batch:") {
			t.Fatalf("got %v, want the wrong type reported", err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nosuch.toml")
		if _, err := loadConfig(t, nil, "--config", path); err == nil || !strings.Contains(err.Error(), path) {
			t.Fatalf("got %v, want an error naming %s", err, path)
		}
	})
}

// TestConfigCheckNamesTheLine: a value of the right type that serve's
// checks refuse is reported with the key's line in the file.
func TestConfigCheckNamesTheLine(t *testing.T) {
	path := writeConfig(t, "longpoll.toml", "log-level = \"loud\"\n\nmax-batch = 0\n")
	st, err := loadConfig(t, nil, "--config", path)
	if err != nil {
		t.Fatal(err)
	}
	err = st.explain(st.c.check())
	for _, want := range []string{
		"--max-batch must be positive (max-batch at " + path + ":3)",
		"--log-level must be debug, info, warn or error (log-level at " + path + ":1)",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want %q", err, want)
		}
	}
	// From a flag, no line is named.
	st, err = loadConfig(t, nil, "--config", path, "--max-batch", "-1", "--log-level", "info")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.explain(st.c.check()); err == nil || err.Error() != "--max-batch must be positive" {
		t.Fatalf("got %v, want the flag's problem alone", err)
	}
}

// TestConfigYAMLRefused: a YAML (or JSON) file is refused by its name,
// before it is read: it need not even exist.
func TestConfigYAMLRefused(t *testing.T) {
	for _, name := range []string{"longpoll.yaml", "longpoll.yml", "LONGPOLL.YAML", "longpoll.json"} {
		path := filepath.Join(t.TempDir(), name)
		_, err := loadConfig(t, nil, "--config", path)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "the configuration file is TOML") {
			t.Errorf("%s: got %v, want it refused by its name", name, err)
		}
	}
}

// TestConfigLists: a list takes an array of strings or one
// comma-separated string, alike; an empty array empties it.
func TestConfigLists(t *testing.T) {
	for _, content := range []string{
		"cors-origins = [\"https://a.example\", \"https://b.example\"]\n",
		"cors-origins = \"https://a.example,https://b.example\"\n",
		"cors-origins = \" https://a.example , https://b.example \"\n",
		"cors-origins = [\n  \"https://a.example\", # the app\n  \"https://b.example\",\n]\n",
	} {
		st, err := loadConfig(t, nil, "--config", writeConfig(t, "longpoll.toml", content))
		if err != nil {
			t.Fatalf("%q: %v", content, err)
		}
		if got := st.c.auth.corsOrigins; !slices.Equal(got, []string{"https://a.example", "https://b.example"}) {
			t.Errorf("%q: cors-origins %q", content, got)
		}
	}
	st, err := loadConfig(t, nil, "--config", writeConfig(t, "longpoll.toml", "trusted-proxies = []\n"))
	if err != nil || len(st.c.auth.trustedProxies) != 0 || st.source("trusted-proxies").source != fromFile {
		t.Fatalf("an empty array: %v %q %+v", err, st.c.auth.trustedProxies, st.source("trusted-proxies"))
	}
	if _, err := loadConfig(t, nil, "--config", writeConfig(t, "longpoll.toml", "cors-origins = [\"https://a.example,https://b.example\"]\n")); err == nil || !strings.Contains(err.Error(), "comma") {
		t.Fatalf("a comma in an element of an array: %v, want an error", err)
	}
}

// TestConfigRelativePaths: a relative path in the file is relative to the
// file's directory, for every key that names a file or a directory; an
// absolute one stays; on the command line, relative stays relative.
func TestConfigRelativePaths(t *testing.T) {
	var b strings.Builder
	for k := range pathKeys {
		fmt.Fprintf(&b, "%s = \"sub/%s\"\n", k, k)
	}
	path := writeConfig(t, "longpoll.toml", b.String())
	dir := filepath.Dir(path)
	rel, err := filepath.Rel(mustGetwd(t), path)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{path, rel} {
		st, err := loadConfig(t, nil, "--config", name)
		if err != nil {
			t.Fatal(err)
		}
		for k := range pathKeys {
			if got, want := st.value(k), filepath.Join(dir, "sub", k); got != want {
				t.Errorf("--config %s: %s = %q, want %q", name, k, got, want)
			}
		}
	}
	st, err := loadConfig(t, nil, "--config", writeConfig(t, "longpoll.toml", "tls-cert = \"/etc/ssl/cert.pem\"\ndata-dir = \"\"\n"), "--tls-key", "key.pem")
	if err != nil {
		t.Fatal(err)
	}
	if st.c.tlsCert != "/etc/ssl/cert.pem" || st.c.tlsKey != "key.pem" || st.c.storeConfig.dataDir != "" {
		t.Fatalf("tls-cert %q, tls-key %q, data-dir %q", st.c.tlsCert, st.c.tlsKey, st.c.storeConfig.dataDir)
	}
}

func mustGetwd(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}

// TestConfigPathKeysComplete: every serve flag whose name says it names
// a file or a directory is among pathKeys, so that a new one is not
// forgotten; and every path key is a serve flag.
func TestConfigPathKeysComplete(t *testing.T) {
	looksLikePath := regexp.MustCompile(`-(file|dir|cert|key|path|socket)$`)
	keys := serveKeys()
	for _, k := range keys {
		if looksLikePath.MatchString(k) && !pathKeys[k] {
			t.Errorf("--%s names a file or directory but is not in pathKeys", k)
		}
	}
	for k := range pathKeys {
		if !slices.Contains(keys, k) {
			t.Errorf("pathKeys holds %s, not a serve flag", k)
		}
	}
}

// TestConfigPrecedence: for a key of each type, a flag wins over the
// environment, the environment over the file, the file over the default.
func TestConfigPrecedence(t *testing.T) {
	def := defaults(t)
	for _, tt := range []struct {
		key                  string
		file, env, flag      string // file is TOML
		wantFile, wantEnvVal string
	}{
		{"log-format", `"json"`, "text", "json", "json", "text"},
		{"max-batch", `5`, "6", "7", "5", "6"},
		{"rate-publish", `1.5`, "2.5", "3.5", "1.5", "2.5"},
		{"poll-timeout", `"5s"`, "6s", "7s", "5s", "6s"},
		{"demo", `false`, "true", "false", "false", "true"},
		{"cors-origins", `["https://f.example", "https://g.example"]`, "https://e.example", "https://c.example", "https://f.example,https://g.example", "https://e.example"},
	} {
		t.Run(tt.key, func(t *testing.T) {
			path := writeConfig(t, "longpoll.toml", tt.key+" = "+tt.file+"\n")
			env := map[string]string{envName(tt.key): tt.env}
			for _, c := range []struct {
				name string
				env  map[string]string
				args []string
				want string
				from string
			}{
				{"default", nil, nil, def[tt.key], fromDefault},
				{"file", nil, []string{"--config", path}, tt.wantFile, fromFile},
				{"env over file", env, []string{"--config", path}, tt.wantEnvVal, fromEnv},
				{"flag over env and file", env, []string{"--config", path, "--" + tt.key + "=" + tt.flag}, tt.flag, fromFlag},
				{"file from LONGPOLL_CONFIG", map[string]string{"LONGPOLL_CONFIG": path}, nil, tt.wantFile, fromFile},
			} {
				st, err := loadConfig(t, c.env, c.args...)
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				if got, from := st.value(tt.key), st.source(tt.key).source; got != c.want || from != c.from {
					t.Errorf("%s: %s = %q from %s, want %q from %s", c.name, tt.key, got, from, c.want, c.from)
				}
			}
		})
	}
	// The values differ from the defaults, or the test proves nothing.
	if def["poll-timeout"] == "5s" || def["max-batch"] == "5" || def["demo"] == "false" {
		t.Fatal("a file value equals its default")
	}
}

// deployFile reads deploy/longpoll.toml.
func deployFile(t *testing.T) (string, string) {
	t.Helper()
	path := filepath.Join("..", "..", "deploy", "longpoll.toml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, string(b)
}

// commentedKey is a key line of deploy/longpoll.toml, commented out.
var commentedKey = regexp.MustCompile(`(?m)^# ([a-z][a-z0-9-]*) = `)

// TestConfigDeployFile: deploy/longpoll.toml loads and changes nothing;
// with its key lines uncommented, it loads, sets every key from the file,
// each to its default.
func TestConfigDeployFile(t *testing.T) {
	path, text := deployFile(t)
	def := defaults(t)
	st, err := loadConfig(t, nil, "--config", path)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.c.check(); err != nil {
		t.Fatalf("deploy/longpoll.toml fails serve's checks: %v", err)
	}
	for _, k := range serveKeys() {
		if st.value(k) != def[k] || st.source(k).source != fromDefault {
			t.Errorf("as it stands, deploy/longpoll.toml sets %s = %q", k, st.value(k))
		}
	}

	uncommented := commentedKey.ReplaceAllString(text, "$1 = ")
	st, err = loadConfig(t, nil, "--config", writeConfig(t, "longpoll.toml", uncommented))
	if err != nil {
		t.Fatalf("deploy/longpoll.toml uncommented: %v", err)
	}
	for _, k := range serveKeys() {
		if st.source(k).source != fromFile {
			t.Errorf("deploy/longpoll.toml uncommented does not set %s", k)
			continue
		}
		if k == "transport" && !eventloop.Supported {
			continue // the file shows Linux's default
		}
		if st.value(k) != def[k] {
			t.Errorf("deploy/longpoll.toml gives %s = %q, its default is %q", k, st.value(k), def[k])
		}
	}
}

// TestConfigDeployFileHasEveryKey: every flag of serve is in
// deploy/longpoll.toml, once, and nothing else is.
func TestConfigDeployFileHasEveryKey(t *testing.T) {
	_, text := deployFile(t)
	count := map[string]int{}
	for _, m := range commentedKey.FindAllStringSubmatch(text, -1) {
		count[m[1]]++
	}
	for _, k := range serveKeys() {
		if count[k] != 1 {
			t.Errorf("serve's --%s is in deploy/longpoll.toml %d times, want once (commented, with its default and a line about it)", k, count[k])
		}
		delete(count, k)
	}
	for k := range count {
		t.Errorf("deploy/longpoll.toml holds %s, not a flag of serve", k)
	}
}

// TestConfigOutputLoads: what longpoll config prints is a configuration
// file that gives the same settings.
func TestConfigOutputLoads(t *testing.T) {
	path := writeConfig(t, "in.toml", "max-batch = 5\ncors-origins = \"https://a.example\"\nauth-cookie = \"a \\\"quoted\\\" \\\\ name\"\nretention-age = \"90m\"\nrate-poll = 2.5\n")
	st, err := loadConfig(t, nil, "--config", path, "--demo=false")
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := printSettings(IO{Stdout: &out}, st); err != nil {
		t.Fatal(err)
	}
	again, err := loadConfig(t, nil, "--config", writeConfig(t, "out.toml", out.String()))
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, k := range serveKeys() {
		if again.value(k) != st.value(k) {
			t.Errorf("%s: printed and loaded %q, was %q", k, again.value(k), st.value(k))
		}
	}
	for _, want := range []string{
		"max-batch = 5", "# file " + path + ":1",
		"demo = false", "# flag --demo",
		`retention-age = "1h30m0s"`,
		"max-hold = " + strconv.Quote(time.Duration(55*time.Second).String()), "# default",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("longpoll config printed no %q:\n%s", want, out.String())
		}
	}
}

// TestConfigRedact: a store URL's password is masked, in the user part
// and in the query; the rest of the URL stays readable.
func TestConfigRedact(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"redis://user:s3cret@redis.internal:6379/0", "redis://user:xxxxx@redis.internal:6379/0"},
		{"rediss://:s3cret@redis.internal:6380/1?cluster=true", "rediss://:xxxxx@redis.internal:6380/1?cluster=true"},
		{"redis://redis.internal:6379/0?password=s3cret&cluster=true", "redis://redis.internal:6379/0?cluster=true&password=xxxxx"},
		{"redis://localhost:6379/0", "redis://localhost:6379/0"},
		{"redis://u:s3cret@%zz", "redis://(an unparsable URL, hidden)"},
		{"memory", "memory"},
	} {
		if got := redact("store", tt.in); got != tt.want || strings.Contains(got, "s3cret") {
			t.Errorf("redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := redact("jwt-secret-file", "/etc/longpoll/secret"); got != "/etc/longpoll/secret" {
		t.Errorf("a secret file's path is shown: got %q", got)
	}
}
