package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/longpoll/longpoll/broker/jetstream"
)

// runConfig prints the settings longpoll serve would run with, given the
// same flags, environment and configuration file, each with where it
// comes from; or, with --check FILE, checks a configuration file as serve
// would, and exits 0 or 2.
func runConfig(_ context.Context, args []string, io IO) int {
	var asJSON bool
	var check string
	st, pos, code, ok := parseServe("config", args, nil, io, func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "print the settings as JSON")
		fs.StringVar(&check, "check", "", "check this configuration file as serve would (with the flags and variables given); print ok and exit 0, or the problems and exit 2")
	})
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(io, "config", "unexpected argument %q", pos[0])
	}
	if check != "" {
		if st.source(configFlagName).source == fromFlag && st.file != check {
			return usageError(io, "config", "give --check FILE or --config FILE, not both")
		}
		st.file = check
	}
	if err := st.loadFile(); err != nil {
		return usageError(io, "config", "%v", err)
	}
	problem := st.explain(st.c.check())
	if check != "" {
		if problem != nil {
			return usageError(io, "config", "%s: %v", check, problem)
		}
		fmt.Fprintf(io.Stdout, "%s: ok\n", check)
		return ExitOK
	}
	var err error
	if asJSON {
		err = printSettingsJSON(io, st)
	} else {
		err = printSettings(io, st)
	}
	if err != nil {
		fmt.Fprintf(io.Stderr, "longpoll config: %v\n", err)
		return ExitError
	}
	if problem != nil {
		return usageError(io, "config", "serve would refuse these settings: %v", problem)
	}
	return ExitOK
}

// describe says where key's value comes from: flag, env (and its
// variable), file (and the line) or default.
func (o origin) describe(key, file string) string {
	switch o.source {
	case fromFlag:
		return "flag --" + key
	case fromEnv:
		return "env " + envName(key)
	case fromFile:
		return fmt.Sprintf("file %s:%d", file, o.line)
	}
	return fromDefault
}

// sentinels explain the values that stand for a default worked out at
// start.
var sentinels = map[string]map[string]string{
	"data-dir":            {"": "a directory named after the address bound"},
	"max-held-polls":      {"0": "from the open-file limit"},
	"rate-publish":        {"-1": "on under auth = jwt, off under none"},
	"rate-poll":           {"-1": "on under auth = jwt, off under none"},
	"max-held-per-client": {"-1": "on under auth = jwt, off under none"},
}

// printSettings prints every setting as a line of TOML, its source in a
// comment: the output loads as a configuration file.
func printSettings(io IO, st *serveSettings) error {
	var b strings.Builder
	if st.file != "" {
		fmt.Fprintf(&b, "# configuration file: %s (%s)\n", st.file, st.source(configFlagName).describe(configFlagName, st.file))
	} else {
		b.WriteString("# no configuration file (--config FILE or LONGPOLL_CONFIG)\n")
	}
	keys := serveKeys()
	lines := make([]string, len(keys))
	width := 0
	for i, k := range keys {
		lines[i] = k + " = " + tomlValue(k, st.fs.Lookup(k))
		width = max(width, min(len(lines[i]), 48))
	}
	for i, k := range keys {
		note := st.source(k).describe(k, st.file)
		if s, ok := sentinels[k][st.fs.Lookup(k).Value.String()]; ok {
			note += " (" + s + ")"
		}
		fmt.Fprintf(&b, "%-*s  # %s\n", width, lines[i], note)
	}
	_, err := fmt.Fprint(io.Stdout, b.String())
	return err
}

// jsonSetting is one setting in longpoll config --json.
type jsonSetting struct {
	Key      string `json:"key"`
	Value    any    `json:"value"`
	Source   string `json:"source"`             // flag, env, file or default
	Variable string `json:"variable,omitempty"` // under env
	Line     int    `json:"line,omitempty"`     // under file
}

func printSettingsJSON(io IO, st *serveSettings) error {
	out := struct {
		File     string        `json:"file"`
		Settings []jsonSetting `json:"settings"`
	}{File: st.file}
	for _, k := range serveKeys() {
		o := st.source(k)
		s := jsonSetting{Key: k, Value: jsonValue(k, st.fs.Lookup(k)), Source: o.source}
		switch o.source {
		case fromEnv:
			s.Variable = envName(k)
		case fromFile:
			s.Line = o.line
		}
		out.Settings = append(out.Settings, s)
	}
	enc := json.NewEncoder(io.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// tomlValue writes f's value as TOML, redacted.
func tomlValue(key string, f *flag.Flag) string {
	switch v := jsonValue(key, f).(type) {
	case bool:
		return strconv.FormatBool(v)
	case int:
		return strconv.Itoa(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case []string:
		q := make([]string, len(v))
		for i, s := range v {
			q[i] = tomlString(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	case string:
		return tomlString(v)
	}
	return tomlString(f.Value.String())
}

// jsonValue is f's value, redacted, as JSON gives it: a duration as its
// text ("25s"), a list as an array.
func jsonValue(key string, f *flag.Flag) any {
	if l, ok := f.Value.(*listFlag); ok {
		return append([]string{}, (*l)...)
	}
	if g, ok := f.Value.(flag.Getter); ok {
		switch v := g.Get().(type) {
		case bool, int, int64, float64:
			return v
		case time.Duration:
			return v.String()
		}
	}
	return redact(key, f.Value.String())
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// redact hides the secrets a setting's value may hold: the password of a
// --store URL (and any query parameter that looks like one). A secret
// file's setting is its path, shown as it is; its content is never read
// here.
func redact(key, v string) string {
	if key == "store" && isNATSURL(v) {
		r, err := jetstream.ParseURL(v)
		if err != nil {
			scheme, _, _ := strings.Cut(v, "://")
			return scheme + "://(an unparsable URL, hidden)"
		}
		return r
	}
	if key != "store" || !isRedisURL(v) {
		return v
	}
	u, err := url.Parse(v)
	if err != nil {
		scheme, _, _ := strings.Cut(v, "://")
		return scheme + "://(an unparsable URL, hidden)"
	}
	if q := u.Query(); len(q) > 0 {
		hidden := false
		for k := range q {
			lk := strings.ToLower(k)
			if strings.Contains(lk, "pass") || strings.Contains(lk, "secret") || strings.Contains(lk, "token") {
				q.Set(k, "xxxxx")
				hidden = true
			}
		}
		if hidden {
			u.RawQuery = q.Encode()
		}
	}
	return u.Redacted()
}
