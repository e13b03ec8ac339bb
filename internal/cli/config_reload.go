package cli

import (
	"log/slog"
	"slices"

	"github.com/longpoll/longpoll"
)

// liveKeys are the settings that SIGHUP applies while the server runs,
// read again from the configuration file: the log level, and the limits
// and CORS origins that longpoll.Server.Reconfigure changes. A change to
// any other key is logged as needing a restart. (SIGHUP also reloads the
// contents of the JWT key files and the TLS certificate, whose paths need
// a restart.)
var liveKeys = []string{
	"log-level",
	"poll-timeout", "max-topics-per-poll", "max-message-size", "max-batch",
	"max-body-size", "max-reply-bytes", "retry-after", "cors-origins",
}

// live returns the settings of c that Reconfigure changes.
func (c *serveConfig) live() longpoll.Live {
	return longpoll.Live{
		PollTimeout:      c.pollTimeout,
		MaxTopicsPerPoll: c.maxTopicsPerPoll,
		MaxMessageSize:   c.maxMessageSize,
		MaxBatch:         c.maxBatch,
		MaxBodySize:      c.maxBodySize,
		MaxReplyBytes:    c.maxReplyBytes,
		RetryAfter:       c.retryAfter,
		CORSOrigins:      slices.Clone(c.auth.corsOrigins),
	}
}

// setting is one setting in force: its value as its flag prints it, and
// where it comes from.
type setting struct {
	text string
	from origin
}

// inForce returns every setting in force, by key: as loaded at the
// start, with the live ones that SIGHUPs applied since.
func (st *serveSettings) inForce() map[string]setting {
	m := map[string]setting{}
	for k, text := range st.loaded {
		m[k] = setting{text: text, from: st.source(k)}
	}
	for k, s := range st.reloaded {
		m[k] = s
	}
	return m
}

// logSettings logs every setting in force at debug level, one line each,
// with where it comes from (secrets redacted as longpoll config does).
func logSettings(log *slog.Logger, st *serveSettings) {
	m := st.inForce()
	for _, k := range serveKeys() {
		s := m[k]
		log.Debug("setting", "key", k, "value", redact(k, s.text), "source", s.from.describe(k, st.file))
	}
}

// reloadConfig reads serve's configuration file again, at SIGHUP, and
// applies what changed among liveKeys: the log level to c.level, the
// limits and CORS origins to srv. It logs each other key that changed as
// needing a restart, each time until the restart. Flags and variables
// still win over the file. A file that fails to load or to pass serve's
// checks changes nothing; reloadConfig then reports false, and the caller
// reloads no keys or certificates either. Without a file there is
// nothing to read, and it reports true.
func reloadConfig(c *serveConfig, srv *longpoll.Server, log *slog.Logger) bool {
	st := c.settings
	if st == nil || st.file == "" {
		return true
	}
	n, err := st.reparse()
	if err == nil {
		err = n.loadFile()
	}
	if err == nil {
		err = n.explain(n.c.check())
	}
	if err != nil {
		log.Error("reading the configuration file again failed: nothing changed, no key or certificate reloaded", "file", st.file, "error", err)
		return false
	}
	old := st.inForce()
	var live, restart []string
	limits := false
	for _, k := range serveKeys() {
		now := n.fs.Lookup(k).Value.String()
		if now == old[k].text {
			continue
		}
		if slices.Contains(liveKeys, k) {
			live = append(live, k)
			limits = limits || k != "log-level"
		} else {
			restart = append(restart, k)
		}
	}
	if limits {
		if err := srv.Reconfigure(n.c.live()); err != nil {
			log.Error("applying the configuration file failed: nothing changed, no key or certificate reloaded", "file", st.file, "error", err)
			return false
		}
	}
	if slices.Contains(live, "log-level") && c.level != nil {
		var lvl slog.Level
		_ = lvl.UnmarshalText([]byte(n.c.logLevel)) // check passed
		c.level.Set(lvl)
	}
	if st.reloaded == nil {
		st.reloaded = map[string]setting{}
	}
	for _, k := range live {
		now := setting{text: n.fs.Lookup(k).Value.String(), from: n.source(k)}
		st.reloaded[k] = now
		log.Info("applied a changed setting", "key", k, "value", now.text, "was", old[k].text)
	}
	for _, k := range restart {
		log.Warn("a changed setting needs a restart", "key", k,
			"value", redact(k, n.fs.Lookup(k).Value.String()), "in_force", redact(k, old[k].text))
	}
	log.Info("read the configuration file again", "file", st.file, "applied", len(live), "need_restart", len(restart))
	logSettings(log, st)
	return true
}
