package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// The configuration file of longpoll serve is a TOML file whose keys are
// serve's flag names: `max-batch = 100` for --max-batch 100. It is one more
// layer under the flags: a flag on the command line wins over its
// LONGPOLL_ variable, the variable over the file, the file over the
// default. The file only fills flags the two layers above left unset, so
// the flag layer (cli.go) stays as it is and every flag keeps its name,
// its variable and its parsing: a value from the file goes through the
// flag's own Set.

// Where a setting comes from, highest first.
const (
	fromFlag    = "flag"
	fromEnv     = "env"
	fromFile    = "file"
	fromDefault = "default"
)

// origin is where one setting's value comes from; line is its line in the
// file, for fromFile.
type origin struct {
	source string
	line   int
}

// configFlagName is the flag, and LONGPOLL_CONFIG the variable, that name
// the file. It is not a key of the file.
const configFlagName = "config"

// pathKeys are the settings that name a file or a directory: a relative
// path in the file is relative to the file's directory (on the command
// line and in the environment, to the working directory, as always).
var pathKeys = map[string]bool{
	"data-dir":        true,
	"tls-cert":        true,
	"tls-key":         true,
	"jwt-secret-file": true,
	"jwt-key-file":    true,
	"nats-creds":      true,
	"nats-nkey":       true,
}

// serveKeys returns the keys a configuration file may hold: serve's
// flags, sorted.
func serveKeys() []string {
	var keys []string
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var c serveConfig
	serveFlags(fs, &c)
	fs.VisitAll(func(f *flag.Flag) { keys = append(keys, f.Name) })
	return keys
}

// serveSettings is serve's settings as the three layers and the defaults
// give them: the flags parsed, filled from the environment and then from
// the configuration file.
type serveSettings struct {
	c       *serveConfig
	fs      *flag.FlagSet
	file    string // --config as given; "" without a file
	origins map[string]origin

	// What parsed the first two layers, to parse them again at SIGHUP.
	args   []string
	getenv func(string) (string, bool)

	// The text of each setting as loaded (serve fills some in later, such
	// as the data directory's default), and the live settings that SIGHUPs
	// changed since, by key.
	loaded   map[string]string
	reloaded map[string]setting
}

// parseServe parses args as serve's flags, and the flags that more adds
// (those of longpoll config), then fills the unset ones from the
// environment, read with getenv (os.LookupEnv when nil). The file layer
// is loadFile's. It returns the positional arguments.
func parseServe(cmd string, args []string, getenv func(string) (string, bool), io IO, more func(*flag.FlagSet)) (*serveSettings, []string, int, bool) {
	st := &serveSettings{c: new(serveConfig), fs: newFlagSet(cmd, "", io), args: args, getenv: getenv}
	serveFlags(st.fs, st.c)
	st.fs.StringVar(&st.file, configFlagName, "", "TOML file of these settings, keys named as the flags (e.g. max-batch = 100); flags and variables win over it")
	if more != nil {
		more(st.fs)
	}
	pos, from, code, ok := parseOrigins(st.fs, args, getenv, io)
	if !ok {
		return nil, nil, code, false
	}
	st.origins = map[string]origin{}
	for name, src := range from {
		st.origins[name] = origin{source: src}
	}
	return st, pos, ExitOK, true
}

// reparse parses the command line and the environment again, for a new
// read of the file.
func (st *serveSettings) reparse() (*serveSettings, error) {
	n, _, _, ok := parseServe(st.fs.Name(), st.args, st.getenv, IO{Stderr: io.Discard}, nil)
	if !ok {
		return nil, errors.New("the command line and the environment no longer parse")
	}
	return n, nil
}

// loadFile reads the configuration file, when one is named, and sets
// every flag it holds that neither the command line nor the environment
// set.
func (st *serveSettings) loadFile() error {
	if st.file != "" {
		cf, err := readConfigFile(st.file)
		if err != nil {
			return err
		}
		if err := cf.apply(st); err != nil {
			return err
		}
	}
	st.loaded = map[string]string{}
	for _, k := range serveKeys() {
		st.loaded[k] = st.fs.Lookup(k).Value.String()
	}
	return nil
}

// source describes where key's value comes from.
func (st *serveSettings) source(key string) origin {
	if o, ok := st.origins[key]; ok {
		return o
	}
	return origin{source: fromDefault}
}

var flagMention = regexp.MustCompile(`--([a-z0-9-]+)`)

// explain adds to a problem that check found in the settings where the
// settings it names come from, when that is the file.
func (st *serveSettings) explain(err error) error {
	if err == nil || st.file == "" {
		return err
	}
	var parts []string
	for part := range strings.SplitSeq(err.Error(), "; ") {
		var at []string
		for _, m := range flagMention.FindAllStringSubmatch(part, -1) {
			if o := st.source(m[1]); o.source == fromFile {
				at = append(at, fmt.Sprintf("%s at %s:%d", m[1], st.file, o.line))
			}
		}
		if len(at) > 0 {
			part += " (" + strings.Join(slices.Compact(at), ", ") + ")"
		}
		parts = append(parts, part)
	}
	return errors.New(strings.Join(parts, "; "))
}

// configFile is a parsed configuration file.
type configFile struct {
	path    string // as named
	dir     string // its directory, absolute: the base of relative paths
	entries []fileEntry
}

// fileEntry is one top-level key of the file with its value, as TOML
// decodes it (string, int64, float64, bool, []any, a table or a time).
type fileEntry struct {
	key   string
	line  int
	value any
}

// fileError is a problem with a configuration file, at a line, with a key
// when there is one.
type fileError struct {
	file string
	line int
	key  string
	msg  string
}

func (e *fileError) Error() string {
	if e.key == "" {
		return fmt.Sprintf("%s:%d: %s", e.file, e.line, e.msg)
	}
	return fmt.Sprintf("%s:%d: %s: %s", e.file, e.line, e.key, e.msg)
}

// readConfigFile reads and parses the TOML file at path. A YAML or JSON
// file is refused by its name, before it is read.
func readConfigFile(path string) (*configFile, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml":
		return nil, fmt.Errorf("%s: a YAML file: the configuration file is TOML (see deploy/longpoll.toml)", path)
	case ".json":
		return nil, fmt.Errorf("%s: a JSON file: the configuration file is TOML (see deploy/longpoll.toml)", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the configuration file: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	return parseConfigFile(path, filepath.Dir(abs), data)
}

// parseConfigFile parses data, the file at path. go-toml decodes the
// document, and checks it all (syntax, duplicate keys); its parser then
// finds the line of each key.
func parseConfigFile(path, dir string, data []byte) (*configFile, error) {
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			line, _ := de.Position()
			msg := strings.TrimPrefix(de.Error(), "toml: ")
			key := strings.Join(de.Key(), ".")
			if key == "" {
				key = keyOnLine(data, line)
			}
			return nil, &fileError{file: path, line: line, key: key, msg: msg}
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	lines := map[string]int{}
	var p unstable.Parser
	p.Reset(data)
	for p.NextExpression() {
		e := p.Expression()
		if e.Kind != unstable.KeyValue && e.Kind != unstable.Table && e.Kind != unstable.ArrayTable {
			continue
		}
		it := e.Key()
		if !it.Next() {
			continue
		}
		k := it.Node()
		if _, seen := lines[string(k.Data)]; !seen {
			lines[string(k.Data)] = p.Shape(k.Raw).Start.Line
		}
	}
	if err := p.Error(); err != nil { // toml.Unmarshal saw none: not expected
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cf := &configFile{path: path, dir: dir}
	for key, v := range doc {
		cf.entries = append(cf.entries, fileEntry{key: key, line: lines[key], value: v})
	}
	sort.Slice(cf.entries, func(i, j int) bool { return cf.entries[i].line < cf.entries[j].line })
	return cf, nil
}

var keyLine = regexp.MustCompile(`^\s*([A-Za-z0-9_-]+)\s*=`)

// keyOnLine returns the bare key that line n (from 1) of data sets, if
// it sets one: the key of a value the decoder refused without naming it.
func keyOnLine(data []byte, n int) string {
	lines := strings.Split(string(data), "\n")
	if n < 1 || n > len(lines) {
		return ""
	}
	if m := keyLine.FindStringSubmatch(lines[n-1]); m != nil {
		return m[1]
	}
	return ""
}

// apply sets each flag of st that the file holds, unless the command line
// or the environment set it. Every entry is checked, set or not; the
// problems are reported together, one per key.
func (cf *configFile) apply(st *serveSettings) error {
	known := map[string]bool{}
	for _, k := range serveKeys() {
		known[k] = true
	}
	var errs []error
	for _, e := range cf.entries {
		fail := func(format string, a ...any) {
			errs = append(errs, &fileError{file: cf.path, line: e.line, key: e.key, msg: fmt.Sprintf(format, a...)})
		}
		f := st.fs.Lookup(e.key)
		if !known[e.key] || f == nil {
			if e.key == configFlagName {
				fail("unknown key: a configuration file cannot name another")
			} else if alt := strings.ReplaceAll(e.key, "_", "-"); known[alt] {
				fail("unknown key; did you mean %s?", alt)
			} else {
				fail("unknown key (the keys are serve's flag names: longpoll serve --help)")
			}
			continue
		}
		texts, err := flagTexts(f, e.value)
		if err != nil {
			fail("%v", err)
			continue
		}
		if pathKeys[e.key] {
			for i, t := range texts {
				if t != "" && !filepath.IsAbs(t) {
					texts[i] = filepath.Join(cf.dir, t)
				}
			}
		}
		if o := st.source(e.key); o.source != fromDefault {
			continue // the command line or the environment wins
		}
		if l, ok := f.Value.(*listFlag); ok {
			*l = nil
		}
		for _, t := range texts {
			if err := f.Value.Set(t); err != nil {
				fail("invalid value %q: %v", t, err)
				break
			}
		}
		st.origins[e.key] = origin{source: fromFile, line: e.line}
	}
	return errors.Join(errs...)
}

// The kinds of flag values, for the TOML types they take.
const (
	kindString = iota
	kindBool
	kindInt
	kindFloat
	kindDuration
	kindList
)

func flagKind(f *flag.Flag) int {
	if _, ok := f.Value.(*listFlag); ok {
		return kindList
	}
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return kindString
	}
	switch g.Get().(type) {
	case bool:
		return kindBool
	case int, int64, uint, uint64:
		return kindInt
	case float64:
		return kindFloat
	case time.Duration:
		return kindDuration
	}
	return kindString
}

// flagTexts turns v, a TOML value, into the texts that f's Set takes: one,
// or one per element of a list (a list also takes one comma-separated
// string). It refuses a value of the wrong type and a duration that does
// not parse, with a message that says what the key takes.
func flagTexts(f *flag.Flag, v any) ([]string, error) {
	wrong := func(want string) error {
		return fmt.Errorf("want %s, got %s", want, tomlType(v))
	}
	switch flagKind(f) {
	case kindBool:
		if b, ok := v.(bool); ok {
			return []string{strconv.FormatBool(b)}, nil
		}
		return nil, wrong("a boolean (true or false)")
	case kindInt:
		if n, ok := v.(int64); ok {
			return []string{strconv.FormatInt(n, 10)}, nil
		}
		return nil, wrong("an integer")
	case kindFloat:
		switch n := v.(type) {
		case int64:
			return []string{strconv.FormatInt(n, 10)}, nil
		case float64:
			return []string{strconv.FormatFloat(n, 'g', -1, 64)}, nil
		}
		return nil, wrong("a number")
	case kindDuration:
		s, ok := v.(string)
		if !ok {
			return nil, wrong(`a duration as a string with its unit, like "25s"`)
		}
		if _, err := time.ParseDuration(s); err != nil {
			return nil, fmt.Errorf(`invalid duration %q: want a number with a unit, like "25s", "1m30s" or "24h"`, s)
		}
		return []string{s}, nil
	case kindList:
		switch l := v.(type) {
		case string:
			return []string{l}, nil
		case []any:
			out := make([]string, 0, len(l))
			for _, x := range l {
				s, ok := x.(string)
				if !ok {
					return nil, fmt.Errorf("want an array of strings, got an element that is %s", tomlType(x))
				}
				if strings.Contains(s, ",") {
					return nil, fmt.Errorf("an element of the array holds a comma: %q", s)
				}
				out = append(out, s)
			}
			return out, nil
		}
		return nil, wrong("an array of strings or a comma-separated string")
	}
	if s, ok := v.(string); ok {
		return []string{s}, nil
	}
	return nil, wrong("a string")
}

// tomlType names the TOML type of v, as toml.Unmarshal decodes it.
func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case []any:
		return "an array"
	case map[string]any:
		return "a table (the keys are at the top level, with no [section] and no dots)"
	}
	return "a date or time"
}
